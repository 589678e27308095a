"""Label-smoothing and knowledge-distillation losses shared by the fairseq plugin and the vision package.

Everything here is plain torch so that both front-ends compute the same numbers. Per-token (or
per-example) values are returned unreduced; callers sum (fairseq: sum over tokens, normalised by
``ntokens``) or average (vision: ``batchmean``). All distillation math runs in float32 whatever the
dtype of the logits, because tempered softmaxes of fp16 logits lose most of their mass at T = 64.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

SMOOTHING_CONVENTIONS = ("uniform", "fairseq")


class InvalidConfig(ValueError):
    """A user-supplied setting is out of range; command-line front-ends print it as one line."""


def check_smoothing(smoothing: float) -> None:
    if not 0.0 <= smoothing < 1.0:
        raise InvalidConfig(f"label smoothing must be in [0, 1), got {smoothing}")


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise InvalidConfig(f"KD temperature must be > 0, got {temperature}")


def check_kd_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise InvalidConfig(f"KD weight must be in [0, 1], got {weight}")


def fairseq_epsilon(smoothing: float, vocab_size: int) -> float:
    """fairseq's ``--label-smoothing`` value that gives the same targets as ``smoothing`` in the paper's
    convention: both put ``smoothing / V`` on every wrong token."""
    return smoothing * (vocab_size - 1) / vocab_size


def label_smoothed_nll(
    lprobs: Tensor,
    target: Tensor,
    smoothing: float,
    ignore_index: Optional[int] = None,
    convention: str = "uniform",
) -> tuple[Tensor, Tensor]:
    """Per-row label-smoothed NLL and plain NLL of log-probabilities ``lprobs`` [N, V].

    ``uniform`` (the paper, Tan et al., torch's ``label_smoothing``): target ``(1-a)·onehot + a/V``.
    ``fairseq``: ``1-a`` on the gold token and ``a/(V-1)`` on every other one.
    Rows whose target is ``ignore_index`` are zero.
    """
    if convention not in SMOOTHING_CONVENTIONS:
        raise InvalidConfig(f"smoothing convention must be one of {SMOOTHING_CONVENTIONS}, got {convention!r}")
    vocab_size = lprobs.size(-1)
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    if smoothing == 0:
        loss = nll  # skipping the smoothing sum keeps -inf logits of masked-out tokens harmless
    elif convention == "uniform":
        loss = (1.0 - smoothing) * nll + (smoothing / vocab_size) * -lprobs.sum(-1)
    else:
        other = smoothing / (vocab_size - 1)
        loss = (1.0 - smoothing - other) * nll + other * -lprobs.sum(-1)
    if ignore_index is not None:
        keep = target.ne(ignore_index)
        loss = loss * keep
        nll = nll * keep
    return loss, nll


@dataclass
class KDTerms:
    """Per-row distillation terms, both already multiplied by T².

    ``cross_entropy`` is what Tan et al. optimise; ``kl`` differs from it by the teacher's entropy (a
    constant for the student) and reads 0 when the student matches the teacher, so it is what gets logged.
    """

    cross_entropy: Tensor
    kl: Tensor


def _teacher_log_probs(teacher_logits: Tensor, temperature: float) -> Tensor:
    return F.log_softmax(teacher_logits.float() / temperature, dim=-1)


def distillation_terms(
    student_logits: Tensor,
    temperature: float,
    teacher_logits: Optional[Tensor] = None,
    teacher_topk_indices: Optional[Tensor] = None,
    teacher_topk_logits: Optional[Tensor] = None,
    mask: Optional[Tensor] = None,
) -> KDTerms:
    """``T² · CE(softmax(teacher/T), log_softmax(student/T))`` and ``T² · KL`` per row of ``student_logits``.

    Give either the teacher's full ``teacher_logits`` [N, V] or its top-k as ``teacher_topk_indices`` and
    ``teacher_topk_logits`` [N, k]; a top-k teacher is renormalised over its k entries at temperature T.
    Rows where ``mask`` is False are zero.
    """
    check_temperature(temperature)
    sparse = teacher_topk_indices is not None
    if sparse == (teacher_logits is not None) or sparse != (teacher_topk_logits is not None):
        raise ValueError("give either teacher_logits or both teacher_topk_indices and teacher_topk_logits")

    student_scaled = student_logits.float() / temperature
    if sparse:
        log_q = _teacher_log_probs(teacher_topk_logits, temperature)
        log_p = student_scaled.gather(-1, teacher_topk_indices.long()) - torch.logsumexp(
            student_scaled, dim=-1, keepdim=True
        )
    else:
        log_q = _teacher_log_probs(teacher_logits, temperature)
        log_p = F.log_softmax(student_scaled, dim=-1)
    q = log_q.exp()
    # -inf student log-probs where the teacher puts no mass would make 0 · inf = nan.
    log_p = log_p.clamp(min=torch.finfo(log_p.dtype).min)
    cross_entropy = -(q * log_p).sum(-1)
    # KL summed per class, not as CE - H: at T = 64 both totals are ~1000x the KL and float32
    # subtraction would lose three digits of it.
    kl = (torch.special.xlogy(q, q) - q * log_p).sum(-1)
    scale = temperature**2
    cross_entropy = cross_entropy * scale
    kl = kl * scale
    if mask is not None:
        cross_entropy = cross_entropy * mask
        kl = kl * mask
    return KDTerms(cross_entropy=cross_entropy, kl=kl)


def topk_teacher(teacher_logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The teacher's k largest logits per row and their vocabulary indices."""
    if not 0 < k <= teacher_logits.size(-1):
        raise InvalidConfig(f"top-k must be in [1, {teacher_logits.size(-1)}], got {k}")
    values, indices = teacher_logits.topk(k, dim=-1)
    return indices, values


@dataclass
class KDObjective:
    """Summed terms of ``w · KD + (1 - w) · LS-NLL`` over the unmasked rows."""

    loss: Tensor
    nll: Tensor
    kd_kl: Tensor


def kd_objective(
    student_logits: Tensor,
    target: Tensor,
    temperature: float,
    kd_weight: float,
    smoothing: float,
    teacher_logits: Optional[Tensor] = None,
    teacher_topk_indices: Optional[Tensor] = None,
    teacher_topk_logits: Optional[Tensor] = None,
    ignore_index: Optional[int] = None,
    convention: str = "uniform",
) -> KDObjective:
    """Word-level KD as Tan et al. train NMT students; with ``kd_weight = 1`` it is the vision paper's
    pure KD loss (summed; divide by the batch size for ``batchmean``)."""
    check_kd_weight(kd_weight)
    check_smoothing(smoothing)
    mask = target.ne(ignore_index) if ignore_index is not None else None
    lprobs = F.log_softmax(student_logits.float(), dim=-1)
    hard, nll = label_smoothed_nll(lprobs, target, smoothing, ignore_index, convention)
    kd = distillation_terms(
        student_logits,
        temperature,
        teacher_logits=teacher_logits,
        teacher_topk_indices=teacher_topk_indices,
        teacher_topk_logits=teacher_topk_logits,
        mask=mask,
    )
    loss = kd_weight * kd.cross_entropy.sum() + (1.0 - kd_weight) * hard.sum()
    return KDObjective(loss=loss, nll=nll.sum(), kd_kl=kd.kl.sum())
