"""The KD term for any transfer (``lskd.divergences``): outcome distributions, then one chunked loss.

A transfer compares the student's and the teacher's distributions over the same outcomes:

- a full teacher: the V tokens;
- a top-k teacher: its k tokens, the teacher renormalised over them. ``kl`` keeps Tan et al.'s loss (the
  student's full-vocabulary log-probabilities at those tokens, ``lskd.losses``); every other divergence
  renormalises the student over the k tokens too, so that each is a divergence between two distributions;
- a top-k teacher with its tail: k + 1 outcomes, the k tokens and "everything else", the teacher's tail
  mass from its full row's log-sum-exp (``TeacherRows.log_normalizer``), the student's from its own row.

The forward KL on raw logits (Hinton's and Tan et al.'s transfer; a top-k teacher also at its own temperature
or with its tail) runs through the fused loss of ``lskd.losses`` and its CPU row kernel when there is a hard
target; the tests compare it with the generic path and the textbook formulas. Every other transfer runs
``_ChunkedTransfer``, Liger-Kernel's recipe: row chunks within a memory bound, each chunk's loss and gradient
by autograd over the plain formulas in the forward, so the backward only scales the stored gradient and no
transfer needs a hand-written one.
Arithmetic is float32 or better whatever the logits' dtype.
"""

import math
from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lskd.checks import check_kd_weight, check_smoothing
from lskd.divergences import NEG_INF, Transfer, divergence_rows, kl, scale_of
from lskd.errors import InvalidConfig
from lskd.losses import _smoothed, _smoothed_target_weights, check_convention, kd_objective

# Elements per row chunk of the generic loss: its autograd graph holds about ten chunk-sized float32
# temporaries, 512 KB each on CPU, so the operands of each pass stay in a core's L2 cache (at V = 8000 this
# was 20-45 % faster than 2^16, 2^18 or 2^20 elements) while the per-chunk overhead of autograd stays small.
CPU_CHUNK_ELEMENTS = 1 << 17
GPU_CHUNK_ELEMENTS = 1 << 23
# A row whose logits are all equal has standard deviation 0; its standardised logits are then all 0.
MIN_VARIANCE = 1e-24


@dataclass
class TeacherRows:
    """The teacher's side of a batch of rows: full ``logits`` [N, V], or its top-k as ``topk_indices`` and
    raw ``topk_logits`` [N, k] with, where the transfer needs them, the full row's ``log_normalizer``
    [N] (log Σ_v exp(t'_v / T_teacher), t' the standardised logits under standardisation: the tail) and the
    full row's ``mean`` and ``std`` [N] (standardisation)."""

    logits: Optional[Tensor] = None
    topk_indices: Optional[Tensor] = None
    topk_logits: Optional[Tensor] = None
    log_normalizer: Optional[Tensor] = None
    mean: Optional[Tensor] = None
    std: Optional[Tensor] = None

    @property
    def sparse(self) -> bool:
        return self.topk_indices is not None

    def check(self, transfer: Transfer) -> None:
        if self.sparse == (self.logits is not None) or self.sparse != (self.topk_logits is not None):
            raise ValueError("give either teacher logits or both top-k indices and top-k logits")
        if transfer.tail and not self.sparse:
            raise InvalidConfig("the tail bucket is for a top-k teacher; this teacher gives its full vocabulary")
        if transfer.tail and self.log_normalizer is None:
            raise InvalidConfig("the tail bucket needs the top-k teacher's full-row log-sum-exp (log_normalizer)")
        if transfer.standardize and self.sparse and (self.mean is None or self.std is None):
            raise InvalidConfig("logit standardisation of a top-k teacher needs its full rows' mean and std")

    def rows(self, chunk: slice) -> "TeacherRows":
        return TeacherRows(*(None if x is None else x[chunk] for x in astuple_shallow(self)))


def astuple_shallow(rows: TeacherRows) -> tuple:
    return tuple(getattr(rows, f.name) for f in fields(rows))


def row_moments(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and sample standard deviation (Sun et al.'s ``std``) of each row's finite entries."""
    finite = torch.isfinite(logits)
    zero = torch.zeros_like(logits)
    count = finite.sum(-1)
    mean = torch.where(finite, logits, zero).sum(-1) / count.clamp_min(1)
    centred = torch.where(finite, logits - mean[:, None], zero)
    variance = centred.square().sum(-1) / (count - 1).clamp_min(1)
    return mean, variance.clamp_min(MIN_VARIANCE).sqrt()


def standardized(logits: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x − mean) / std per row; -inf entries stay -inf."""
    finite = torch.isfinite(logits)
    safe = torch.where(finite, logits, torch.zeros_like(logits))
    z = (safe - mean[:, None]) / std[:, None]
    return torch.where(finite, z, torch.full_like(z, NEG_INF))


def _prepared(logits: Tensor, standardize: bool, temperature: float, moments=None) -> Tensor:
    if standardize:
        logits = standardized(logits, *(moments if moments is not None else row_moments(logits)))
    # A product is several times cheaper than a quotient on a CPU, and T = 1 needs neither pass.
    return logits if temperature == 1 else logits * (1.0 / temperature)


def _safe_logsumexp(x: Tensor) -> Tensor:
    """logsumexp per row; -inf with a zero gradient for a row of -inf only (torch's gives NaN there)."""
    empty = (x == NEG_INF).all(-1)
    value = torch.logsumexp(torch.where(empty[:, None], torch.zeros_like(x), x), -1)
    return torch.where(empty, torch.full_like(value, NEG_INF), value)


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 − e^x) for x <= 0, accurate on both sides of −log 2."""
    x = x.clamp_max(0.0)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def teacher_log_normalizer(logits: Tensor, transfer: Transfer) -> Tensor:
    """log Σ_v exp(t'_v / T_teacher) per row of full teacher logits: what the tail bucket needs."""
    return _safe_logsumexp(_prepared(logits.float(), transfer.standardize, transfer.teacher_t))


def topk_teacher_rows(logits: Tensor, k: int, transfer: Transfer) -> TeacherRows:
    """An online top-k teacher with the full-row statistics its transfer needs, read before the cut."""
    if not 0 < k <= logits.size(-1):
        raise InvalidConfig(f"top-k must be in [1, {logits.size(-1)}], got {k}")
    values, indices = logits.topk(k, dim=-1)
    rows = TeacherRows(topk_indices=indices, topk_logits=values)
    if transfer.standardize:
        rows.mean, rows.std = row_moments(logits.float())
    if transfer.tail:
        rows.log_normalizer = teacher_log_normalizer(logits, transfer)
    return rows


def topk_teacher_log_probs(teacher: TeacherRows, transfer: Transfer, dtype: torch.dtype) -> Tensor:
    """A top-k teacher's log-probabilities over its k tokens [N, k], renormalised over them, or with its
    tail [N, k + 1]: each token's full-row log-probability, then log of the mass outside the k tokens."""
    moments = (teacher.mean.to(dtype), teacher.std.to(dtype)) if transfer.standardize else None
    picked = _prepared(teacher.topk_logits.to(dtype), transfer.standardize, transfer.teacher_t, moments)
    if not transfer.tail:
        return F.log_softmax(picked, -1)
    log_q_k = picked - teacher.log_normalizer.to(dtype)[:, None]
    return torch.cat([log_q_k, _log1mexp(torch.logsumexp(log_q_k, -1))[:, None]], -1)


def outcome_log_probs(student: Tensor, teacher: TeacherRows, transfer: Transfer) -> tuple[Tensor, Tensor]:
    """(student, teacher) log-probabilities over the transfer's outcomes, per row."""
    if teacher.sparse and not transfer.tail and transfer.divergence != "kl":
        # Renormalised over the k tokens, the student's full-row normaliser cancels: no pass over V.
        moments = row_moments(student) if transfer.standardize else None
        picked = student.gather(-1, teacher.topk_indices)
        log_p = F.log_softmax(_prepared(picked, transfer.standardize, transfer.temperature, moments), -1)
        return log_p, topk_teacher_log_probs(teacher, transfer, student.dtype)
    log_p = F.log_softmax(_prepared(student, transfer.standardize, transfer.temperature), -1)
    if not teacher.sparse:
        return log_p, F.log_softmax(
            _prepared(teacher.logits.to(student.dtype), transfer.standardize, transfer.teacher_t), -1
        )
    indices = teacher.topk_indices
    log_q = topk_teacher_log_probs(teacher, transfer, student.dtype)
    if not transfer.tail:  # the forward KL keeps the student's full-row probabilities at the k tokens
        return log_p.gather(-1, indices), log_q
    log_p_k = log_p.gather(-1, indices)
    log_p_tail = _safe_logsumexp(log_p.scatter(-1, indices, NEG_INF))
    log_q_k, log_q_tail = log_q[:, :-1], log_q[:, -1]
    # No outcome is left outside the k tokens (k = V, or -inf logits): the teacher's tail is its rounding.
    log_q_tail = torch.where(log_p_tail == NEG_INF, torch.full_like(log_q_tail, NEG_INF), log_q_tail)
    return torch.cat([log_p_k, log_p_tail[:, None]], -1), torch.cat([log_q_k, log_q_tail[:, None]], -1)


@dataclass(frozen=True)
class _Plan:
    transfer: Transfer
    kd_weight: float
    smoothing: float
    convention: str


def _divergence_terms(student: Tensor, teacher: TeacherRows, transfer: Transfer) -> tuple[Tensor, Tensor]:
    """Per row: the scaled divergence (differentiable) and the scaled forward KL (a logged value)."""
    log_p, log_q = outcome_log_probs(student, teacher, transfer)
    # Outcomes of probability 0 come from -inf logits only, or from an empty tail: one reduction per chunk.
    zeros = bool(log_p.detach().amin() == NEG_INF or log_q.amin() == NEG_INF)
    divergence = transfer.scale * divergence_rows(log_p, log_q, transfer, zeros)
    if transfer.divergence == "kl":
        return divergence, divergence.detach()
    with torch.no_grad():
        return divergence, scale_of("kl", transfer.temperature) * kl(log_p, log_q, zeros)


def _add_hard_loss(student: Tensor, target: Tensor, weight: Tensor, plan: _Plan, grad: Tensor) -> tuple[Tensor, Tensor]:
    """The LS-NLL and NLL per row, and ``weight`` times the LS-NLL's gradient added to ``grad`` in place:
    p − y for the smoothed target y (the divergence's gradient is autograd's; this one is every transfer's)."""
    vocab = student.size(-1)
    lprobs = F.log_softmax(student, -1)
    nll = -lprobs.gather(-1, target[:, None]).squeeze(-1)
    hard = _smoothed(nll, lambda: lprobs.sum(-1), plan.smoothing, vocab, plan.convention)
    gold, other = _smoothed_target_weights(plan.smoothing, vocab, plan.convention)
    grad.addcmul_(lprobs.exp_(), weight[:, None])
    if other != 0:
        grad.sub_((other * weight)[:, None])
    grad.scatter_add_(-1, target[:, None], -(gold - other) * weight[:, None])
    return hard, nll


def _chunk_rows(device: torch.device, vocab: int) -> int:
    elements = CPU_CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS
    return max(1, elements // vocab)


def _chunked_passes(student, teacher: TeacherRows, target, mask, plan: _Plan) -> tuple[Tensor, Tensor]:
    """Per-row terms [4, N] (loss, NLL, scaled divergence, scaled forward KL) and the gradient of the
    per-row loss [N, V], chunk by chunk."""
    rows, vocab = student.shape
    compute = torch.promote_types(student.dtype, torch.float32)
    terms = torch.zeros(4, rows, dtype=compute, device=student.device)
    grad = torch.empty(rows, vocab, dtype=compute, device=student.device)
    step = _chunk_rows(student.device, vocab)
    for start in range(0, rows, step):
        chunk = slice(start, start + step)
        keep = None if mask is None else mask[chunk]
        if keep is not None and not keep.any():
            grad[chunk] = 0.0
            continue
        logits = student[chunk].detach().to(compute)
        with torch.enable_grad():
            logits.requires_grad_()
            divergence, forward_kl = _divergence_terms(logits, teacher.rows(chunk), plan.transfer)
            keep_rows = torch.ones_like(divergence) if keep is None else keep.to(divergence.dtype)
            (grad[chunk],) = torch.autograd.grad(divergence, logits, plan.kd_weight * keep_rows)
        divergence, logits = divergence.detach(), logits.detach()
        loss, nll = divergence, torch.zeros_like(divergence)
        if target is not None:
            hard, nll = _add_hard_loss(logits, target[chunk], (1.0 - plan.kd_weight) * keep_rows, plan, grad[chunk])
            loss = plan.kd_weight * divergence + (1.0 - plan.kd_weight) * hard
        values = torch.stack([loss, nll, divergence, forward_kl])
        if keep is not None and not bool(keep.all()):  # padding rows read 0 and pass no gradient
            values = torch.where(keep, values, torch.zeros_like(values))
            grad[chunk].masked_fill_(~keep[:, None], 0.0)
        terms[:, chunk] = values
    return terms, grad


class _ChunkedTransfer(torch.autograd.Function):
    """Per-row loss (differentiable), NLL, scaled divergence and scaled forward KL (logged values)."""

    @staticmethod
    def forward(ctx, student, target, mask, teacher, plan):
        terms, grad = _chunked_passes(student, teacher, target, mask, plan)
        ctx.grad = grad
        ctx.inputs = (student, teacher, target, mask, plan)
        outputs = tuple(t.clone() for t in terms.to(torch.promote_types(student.dtype, torch.float32)))
        ctx.mark_non_differentiable(*outputs[1:])
        return outputs

    @staticmethod
    def backward(ctx, grad_loss, *unused):
        grad = ctx.grad if ctx.grad is not None else _chunked_passes(*ctx.inputs)[1]  # a second backward recomputes
        ctx.grad = None
        if not bool((grad_loss == 1).all()):  # a summed loss's gradient is 1 per row: no pass needed
            grad.mul_(grad_loss[:, None].to(grad.dtype))
        return grad.to(ctx.inputs[0].dtype), None, None, None, None


@dataclass
class TransferObjective:
    """``w · scale · D + (1 − w) · LS-NLL`` per row or summed; ``divergence`` is the scaled D and
    ``kd_kl`` the scaled forward KL over the same outcomes (what runs of different transfers share).
    Only ``loss`` carries a gradient. For the fused forward KL ``loss`` holds T²·CE, which differs from
    T²·KL by the teacher's entropy (same gradient)."""

    loss: Tensor
    nll: Tensor
    kd_kl: Tensor
    divergence: Tensor


def _fused_kl(transfer: Transfer, teacher: TeacherRows) -> bool:
    """The forward KL on raw logits: the fused loss, whose top-k teacher may have its own temperature and
    the tail bucket (its log-probabilities come in; the student's side is the fused passes')."""
    return transfer.is_plain_kl or (transfer.divergence == "kl" and teacher.sparse and not transfer.standardize)


def transfer_objective(
    student_logits: Tensor,
    target: Optional[Tensor],
    teacher: TeacherRows,
    transfer: Transfer,
    kd_weight: float = 1.0,
    smoothing: float = 0.0,
    ignore_index: Optional[int] = None,
    convention: str = "uniform",
    reduce: bool = True,
    kernel: str = "auto",
) -> TransferObjective:
    """Word-level (or per-image) KD under any transfer; the plain forward KL takes the fused loss.

    ``target`` None gives the KD term alone (``kd_weight`` must then be 1)."""
    check_kd_weight(kd_weight)
    check_smoothing(smoothing)
    check_convention(convention)
    teacher.check(transfer)
    if target is None and kd_weight != 1.0:
        raise InvalidConfig(f"KD weight {kd_weight} mixes in a hard loss; give the targets")
    mask = target.ne(ignore_index) if (target is not None and ignore_index is not None) else None
    compute = torch.promote_types(student_logits.dtype, torch.float32)
    if _fused_kl(transfer, teacher) and target is not None:
        fused = kd_objective(
            student_logits,
            target,
            transfer.temperature,
            kd_weight,
            smoothing,
            teacher_logits=teacher.logits,
            teacher_topk_indices=teacher.topk_indices,
            teacher_topk_logits=teacher.topk_logits,
            ignore_index=ignore_index,
            convention=convention,
            reduce=reduce,
            kernel=kernel,
            teacher_topk_log_probs=None if transfer.is_plain_kl else topk_teacher_log_probs(teacher, transfer, compute),
        )
        return TransferObjective(fused.loss, fused.nll, fused.kd_kl, fused.kd_kl)
    if teacher.sparse:
        teacher = replace(teacher, topk_indices=teacher.topk_indices.long())
    plan = _Plan(transfer, kd_weight, smoothing, convention)
    loss, nll, divergence, forward_kl = _ChunkedTransfer.apply(student_logits, target, mask, teacher, plan)
    objective = TransferObjective(loss, nll, forward_kl, divergence)
    if reduce:
        objective = TransferObjective(*(x.sum() for x in (loss, nll, forward_kl, divergence)))
    return objective


def transfer_terms(student_logits: Tensor, teacher: TeacherRows, transfer: Transfer, mask=None) -> TransferObjective:
    """The scaled KD term per row alone (``loss`` = ``divergence``), through the chunked path for every
    transfer: the generic path's own entry, which the tests compare with the textbook formulas."""
    teacher.check(transfer)
    if teacher.sparse:
        teacher = replace(teacher, topk_indices=teacher.topk_indices.long())
    plan = _Plan(transfer, 1.0, 0.0, "uniform")
    loss, nll, divergence, forward_kl = _ChunkedTransfer.apply(student_logits, None, mask, teacher, plan)
    return TransferObjective(loss, nll, forward_kl, divergence)
