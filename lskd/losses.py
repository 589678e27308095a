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

from lskd.checks import check_kd_weight, check_smoothing, check_temperature
from lskd.errors import InvalidConfig

SMOOTHING_CONVENTIONS = ("uniform", "fairseq")


def check_convention(convention: str) -> None:
    if convention not in SMOOTHING_CONVENTIONS:
        raise InvalidConfig(f"smoothing convention must be one of {SMOOTHING_CONVENTIONS}, got {convention!r}")


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
    check_convention(convention)
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


# Rows per chunk of the fused loss: bounds its temporaries to about 16 MB of float32 whatever the batch.
CHUNK_ELEMENTS = 1 << 22


def _smoothed_target_weights(smoothing: float, vocab_size: int, convention: str) -> tuple[float, float]:
    """(weight on the gold token, weight on every other token) of the smoothed target distribution."""
    if convention == "uniform":
        other = smoothing / vocab_size
        return 1.0 - smoothing + other, other
    return 1.0 - smoothing, smoothing / (vocab_size - 1)


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """Σ_j a[i, j]·b[i, j] per row, without materialising the product."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class _FusedKD(torch.autograd.Function):
    """Per-row LS-NLL, NLL, T²·CE and T²·KL of student logits against a teacher, in one pass.

    Autograd over the plain formulas keeps several [tokens, V] float32 intermediates alive for the
    backward pass. Here the forward works in row chunks and keeps only the teacher distribution (the one
    extra [tokens, V] buffer of online KD; [tokens, k] for a top-k teacher); the backward recomputes the
    student softmaxes chunk by chunk and writes the gradient directly:
    ``d/ds = c_hard·(p - y_smooth) + c_nll·(p - onehot) + c_kd·T·(p_T - q)``.
    """

    @staticmethod
    def forward(ctx, student, target, mask, teacher_logits, topk_indices, topk_logits, temperature, smoothing,
                convention):
        rows, vocab = student.shape
        compute = torch.promote_types(student.dtype, torch.float32)
        sparse = topk_indices is not None
        teacher = teacher_logits is not None or sparse
        outputs = torch.zeros(4, rows, dtype=compute, device=student.device)
        hard, nll, cross_entropy, kl = outputs
        q_saved = None
        if teacher:
            q_shape = topk_logits.shape if sparse else (rows, vocab)
            q_saved = torch.empty(q_shape, dtype=compute, device=student.device)
        lowest = torch.finfo(compute).min
        step = max(1, CHUNK_ELEMENTS // vocab)
        for start in range(0, rows, step):
            chunk = slice(start, start + step)
            logits = student[chunk].to(compute)
            lprobs = None
            if target is not None:
                lprobs = F.log_softmax(logits, dim=-1)
                hard[chunk], nll[chunk] = label_smoothed_nll(lprobs, target[chunk], smoothing, convention=convention)
            if not teacher:
                continue
            if sparse:
                scaled = logits / temperature
                log_q = F.log_softmax(topk_logits[chunk].to(compute) / temperature, dim=-1)
                log_p = scaled.gather(-1, topk_indices[chunk]) - torch.logsumexp(scaled, dim=-1, keepdim=True)
            else:
                log_q = F.log_softmax(teacher_logits[chunk].to(compute) / temperature, dim=-1)
                log_p = lprobs if temperature == 1 and lprobs is not None else F.log_softmax(logits / temperature, -1)
            q = torch.exp(log_q, out=q_saved[chunk])
            # -inf log-probabilities (masked tokens) where the teacher puts no mass would make 0 · inf = nan;
            # clamping in place costs less than finding out whether any are -inf, and needs no host sync.
            log_p.clamp_(min=lowest)
            log_q.clamp_(min=lowest)
            q_log_p = _row_dot(q, log_p)
            cross_entropy[chunk] = -q_log_p
            # KL summed per entry, not as Σ q·log q - Σ q·log p: at T = 64 both sums are ~1000x the KL.
            kl[chunk] = _row_dot(q, log_q.sub_(log_p))
        outputs[2:] *= temperature**2
        if mask is not None:
            outputs.masked_fill_(~mask, 0.0)
        ctx.save_for_backward(student, target, mask, q_saved, topk_indices)
        ctx.settings = (temperature, smoothing, convention, sparse)
        return hard, nll, cross_entropy, kl

    @staticmethod
    def backward(ctx, grad_hard, grad_nll, grad_ce, grad_kl):
        student, target, mask, q_saved, topk_indices = ctx.saved_tensors
        temperature, smoothing, convention, sparse = ctx.settings
        rows, vocab = student.shape
        compute = grad_hard.dtype
        gold_weight, other_weight = _smoothed_target_weights(smoothing, vocab, convention)
        coef_kd = (grad_ce + grad_kl) * temperature
        coef_probs = grad_hard + grad_nll
        coef_gold = grad_hard * (gold_weight - other_weight) + grad_nll
        grad = torch.empty_like(student)
        step = max(1, CHUNK_ELEMENTS // vocab)
        for start in range(0, rows, step):
            chunk = slice(start, start + step)
            logits = student[chunk].to(compute)
            g = grad[chunk] if grad.dtype == compute else torch.empty_like(logits)
            probs = None
            if target is not None:
                probs = F.softmax(logits, dim=-1)
                torch.mul(probs, coef_probs[chunk, None], out=g)
                g.sub_(grad_hard[chunk, None] * other_weight)
                g.scatter_add_(-1, target[chunk, None], -coef_gold[chunk, None])
            else:
                g.zero_()
            if q_saved is not None:
                if temperature != 1 or probs is None:
                    probs = None  # frees the untempered chunk before the tempered one is allocated
                    probs = F.softmax(logits / temperature, dim=-1)
                g.addcmul_(probs, coef_kd[chunk, None])
                if sparse:
                    g.scatter_add_(-1, topk_indices[chunk], -coef_kd[chunk, None] * q_saved[chunk])
                else:
                    g.addcmul_(q_saved[chunk], -coef_kd[chunk, None])
            if mask is not None:
                g.masked_fill_(~mask[chunk, None], 0.0)
            if g.data_ptr() != grad[chunk].data_ptr():
                grad[chunk] = g
        return grad, None, None, None, None, None, None, None, None


def _check_teacher_arguments(teacher_logits, teacher_topk_indices, teacher_topk_logits) -> None:
    sparse = teacher_topk_indices is not None
    if sparse == (teacher_logits is not None) or sparse != (teacher_topk_logits is not None):
        raise ValueError("give either teacher_logits or both teacher_topk_indices and teacher_topk_logits")


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
    _check_teacher_arguments(teacher_logits, teacher_topk_indices, teacher_topk_logits)
    indices = None if teacher_topk_indices is None else teacher_topk_indices.long()
    _, _, cross_entropy, kl = _FusedKD.apply(
        student_logits, None, mask, teacher_logits, indices, teacher_topk_logits, temperature, 0.0, "uniform"
    )
    return KDTerms(cross_entropy=cross_entropy, kl=kl)


def topk_teacher(teacher_logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The teacher's k largest logits per row and their vocabulary indices."""
    if not 0 < k <= teacher_logits.size(-1):
        raise InvalidConfig(f"top-k must be in [1, {teacher_logits.size(-1)}], got {k}")
    values, indices = teacher_logits.topk(k, dim=-1)
    return indices, values


@dataclass
class KDObjective:
    """Terms of ``w · KD + (1 - w) · LS-NLL``, summed over the unmasked rows (or per row, masked rows 0)."""

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
    reduce: bool = True,
) -> KDObjective:
    """Word-level KD as Tan et al. train NMT students; with ``kd_weight = 1`` it is the vision paper's
    pure KD loss (summed; divide by the batch size for ``batchmean``). ``reduce=False`` keeps one value
    per row (fairseq's ``reduce`` argument)."""
    check_kd_weight(kd_weight)
    check_smoothing(smoothing)
    check_temperature(temperature)
    _check_teacher_arguments(teacher_logits, teacher_topk_indices, teacher_topk_logits)
    check_convention(convention)
    mask = target.ne(ignore_index) if ignore_index is not None else None
    indices = None if teacher_topk_indices is None else teacher_topk_indices.long()
    hard, nll, cross_entropy, kl = _FusedKD.apply(
        student_logits, target, mask, teacher_logits, indices, teacher_topk_logits, temperature, smoothing,
        convention,
    )
    loss = kd_weight * cross_entropy + (1.0 - kd_weight) * hard
    if not reduce:
        return KDObjective(loss=loss, nll=nll, kd_kl=kl)
    return KDObjective(loss=loss.sum(), nll=nll.sum(), kd_kl=kl.sum())
