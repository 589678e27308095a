"""The specification of ``lskd.losses``: each objective written once as plain autograd over log_softmax.

The fused loss (``lskd.losses._FusedKD``) hand-derives its backward for every case and never builds the
[rows, V] intermediates written here; these functions say what it must compute, value and gradient, with the
same arguments and results. The tests hold the fused paths (eager and compiled) against them, and them against
float64 formulas written out in the tests. Arithmetic is in the logits' dtype, float32 at least, on whatever
device the logits are; the cost (several [rows, V] tensors kept for autograd) makes them a reference, not a
training loss.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lskd.losses import KDObjective, KDTerms


def _compute(logits: Tensor) -> Tensor:
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _weighted_sum(weights: Tensor, values: Tensor) -> Tensor:
    """Σ w·x per row, an outcome of weight 0 counting 0 (a masked -inf logit has log p = -inf)."""
    return torch.where(weights > 0, weights * values, 0.0).sum(-1)


def smoothed_targets(
    target: Tensor, vocab: int, smoothing: float, convention: str = "uniform", dtype: torch.dtype = torch.float32
) -> Tensor:
    """The label-smoothed target distributions [N, V]: ``uniform`` (1-a)·onehot + a/V (Szegedy et al.),
    ``fairseq`` 1-a on the gold token and a/(V-1) on each other one."""
    onehot = F.one_hot(target, vocab).to(dtype)
    if convention == "uniform":
        return (1 - smoothing) * onehot + smoothing / vocab
    return (1 - smoothing) * onehot + smoothing / (vocab - 1) * (1 - onehot)


def label_smoothed_nll(
    student_logits: Tensor, target: Tensor, smoothing: float, convention: str = "uniform"
) -> tuple[Tensor, Tensor]:
    """Per-row cross-entropy against the smoothed targets, and the plain NLL of the gold token."""
    log_p = F.log_softmax(_compute(student_logits), -1)
    weights = smoothed_targets(target, log_p.size(-1), smoothing, convention, log_p.dtype)
    nll = -log_p.gather(-1, target[:, None]).squeeze(-1)
    return -_weighted_sum(weights, log_p), nll


def distillation_terms(
    student_logits: Tensor,
    temperature: float,
    teacher_logits: Optional[Tensor] = None,
    teacher_topk_indices: Optional[Tensor] = None,
    teacher_topk_logits: Optional[Tensor] = None,
    mask: Optional[Tensor] = None,
    teacher_topk_log_probs: Optional[Tensor] = None,
) -> KDTerms:
    """T²·CE(q, p_T) and T²·KL(q ‖ p_T) per row, p_T = softmax(student / T).

    q is softmax(teacher / T) over the vocabulary, or over a top-k teacher's k tokens (the student keeps its
    full-vocabulary probabilities there), or the given ``teacher_topk_log_probs`` [N, k]; with k + 1 columns the
    last is the teacher's tail and the outcomes are the k tokens and everything else. Rows where ``mask`` is
    False are 0."""
    log_p = F.log_softmax(_compute(student_logits) / temperature, -1)
    if teacher_topk_indices is None:
        log_q = F.log_softmax(_compute(teacher_logits) / temperature, -1)
    else:
        indices = teacher_topk_indices.long()
        k = indices.size(-1)
        if teacher_topk_log_probs is None:
            log_q = F.log_softmax(_compute(teacher_topk_logits) / temperature, -1)
        else:
            log_q = teacher_topk_log_probs.to(log_p.dtype)
        picked = log_p.gather(-1, indices)
        if log_q.size(-1) > k:  # the tail outcome: the student's probability outside the k tokens
            outside = log_p.exp().scatter(-1, indices, 0.0).sum(-1, keepdim=True)
            log_p_tail = torch.where(outside > 0, outside, 1.0).log()
            log_q = torch.cat([log_q[:, :k], torch.where(outside > 0, log_q[:, k:], -torch.inf)], -1)
            picked = torch.cat([picked, log_p_tail], -1)
        log_p = picked
    q = log_q.exp()
    cross_entropy = -_weighted_sum(q, log_p) * temperature**2
    kl = _weighted_sum(q, log_q - log_p) * temperature**2
    if mask is not None:
        cross_entropy, kl = torch.where(mask, cross_entropy, 0.0), torch.where(mask, kl, 0.0)
    return KDTerms(cross_entropy=cross_entropy, kl=kl)


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
    teacher_topk_log_probs: Optional[Tensor] = None,
) -> KDObjective:
    """``w·T²·CE(q, p_T) + (1 - w)·LS-NLL`` per row, as ``lskd.losses.kd_objective`` (whose docstring
    gives the formula and its sources) with the same arguments, less ``kernel``."""
    mask = target.ne(ignore_index) if ignore_index is not None else None
    terms = distillation_terms(
        student_logits,
        temperature,
        teacher_logits=teacher_logits,
        teacher_topk_indices=teacher_topk_indices,
        teacher_topk_logits=teacher_topk_logits,
        mask=mask,
        teacher_topk_log_probs=teacher_topk_log_probs,
    )
    hard, nll = label_smoothed_nll(student_logits, target, smoothing, convention)
    if mask is not None:
        hard, nll = torch.where(mask, hard, 0.0), torch.where(mask, nll, 0.0)
    loss = kd_weight * terms.cross_entropy + (1.0 - kd_weight) * hard
    if not reduce:
        return KDObjective(loss=loss, nll=nll, kd_kl=terms.kl)
    return KDObjective(loss=loss.sum(), nll=nll.sum(), kd_kl=terms.kl.sum())
