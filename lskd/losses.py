"""Label-smoothing and knowledge-distillation losses shared by the fairseq plugin and the vision package.

Everything here is plain torch so that both front-ends compute the same numbers. Per-token (or
per-example) values are returned unreduced; callers sum (fairseq: sum over tokens, normalised by
``ntokens``) or average (vision: ``batchmean``). All distillation math runs in float32 whatever the
dtype of the logits, because tempered softmaxes of fp16 logits lose most of their mass at T = 64.
``lskd.reference`` writes each objective here in plain autograd: the specification the tests hold these
fused paths against.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from lskd.checks import check_kd_weight, check_smoothing, check_temperature
from lskd.cpu_kernel import check_kernel, row_kernel
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
    nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = _smoothed(nll, lambda: lprobs.sum(-1), smoothing, lprobs.size(-1), convention)
    if ignore_index is not None:
        keep = target.ne(ignore_index)
        loss = loss * keep
        nll = nll * keep
    return loss, nll


def _smoothed_target_weights(smoothing: float, vocab_size: int, convention: str) -> tuple[float, float]:
    """(weight on the gold token, weight on every other token) of the smoothed target distribution."""
    if convention == "uniform":
        other = smoothing / vocab_size
        return 1.0 - smoothing + other, other
    return 1.0 - smoothing, smoothing / (vocab_size - 1)


def _smoothed(nll: Tensor, lprob_sum, smoothing: float, vocab_size: int, convention: str) -> Tensor:
    """LS-NLL from the gold token's NLL and ``lprob_sum()`` = Σ_v log p_v (called only when needed)."""
    if smoothing == 0:
        return nll  # skipping the smoothing sum keeps -inf logits of masked-out tokens harmless
    gold, other = _smoothed_target_weights(smoothing, vocab_size, convention)
    return (gold - other) * nll - other * lprob_sum()


@dataclass
class KDTerms:
    """Per-row distillation terms, both already multiplied by T².

    ``cross_entropy`` is what Tan et al. optimise; ``kl`` differs from it by the teacher's entropy (a
    constant for the student) and reads 0 when the student matches the teacher, so it is what gets logged.
    """

    cross_entropy: Tensor
    kl: Tensor


# Elements per row chunk of the fused loss. On CPU a chunk's few float32 temporaries stay in the cache,
# so the passes over a chunk cost arithmetic rather than memory traffic (bench/results.md); on a GPU
# chunks only bound the temporaries (16 MB each), and fewer of them mean fewer kernel launches.
CPU_CHUNK_ELEMENTS = 1 << 18
GPU_CHUNK_ELEMENTS = 1 << 22


def _chunk_rows(device: torch.device, vocab: int) -> int:
    elements = CPU_CHUNK_ELEMENTS if device.type == "cpu" else GPU_CHUNK_ELEMENTS
    return max(1, elements // vocab)


def _row_dot(a: Tensor, b: Tensor, scratch: Tensor, out: Tensor) -> None:
    """Σ_j a[i, j]·b[i, j] per row into ``out``: multiply, then a cascaded sum (a bmm dot product sums less
    accurately on CPU). nansum: a zero teacher mass times a -inf (masked) logit counts as 0."""
    torch.nansum(torch.mul(a, b, out=scratch), -1, out=out)


class SoftmaxStatistics(NamedTuple):
    """What a row's log-sum-exp is rebuilt from after its softmax pass, per row: the ``peak`` (row maximum)
    of the softmax's input, the ``largest_prob`` it wrote and the ``prob_sum`` of what it wrote."""

    peak: Tensor
    largest_prob: Tensor
    prob_sum: Tensor

    def rows(self, chunk: slice) -> "SoftmaxStatistics":
        return SoftmaxStatistics(*(statistic[chunk] for statistic in self))


class RowStatistics(NamedTuple):
    """Everything the fused passes reduce a row to, as views into the one [13, rows] tensor that the
    compiled row kernel (``lskd/kernels/kd_rows.cpp``) fills in this order."""

    tempered: SoftmaxStatistics  # of student / T
    plain: SoftmaxStatistics  # of the student
    teacher: SoftmaxStatistics  # of teacher / T (full teacher only)
    gold: Tensor  # the gold token's logit (hard target only)
    logit_sum: Tensor  # Σ_v s_v
    q_student: Tensor  # Σ_v q_v·s_v/T over q as written (full teacher only; divided by teacher.prob_sum when used)
    q_teacher: Tensor  # Σ_v q_v·t_v/T, likewise

    @staticmethod
    def over(table: Tensor) -> "RowStatistics":
        """Named views of ``table`` [13, rows]."""
        return RowStatistics(
            SoftmaxStatistics(*table[0:3]), SoftmaxStatistics(*table[3:6]), SoftmaxStatistics(*table[6:9]), *table[9:13]
        )


def _softmax_with_stats(x: Tensor, out: Tensor, stats: SoftmaxStatistics, peak_known: bool = False) -> Tensor:
    """softmax(x) into ``out``; ``stats`` receives what ``_log_sum_exp`` needs (``stats.peak``, the row
    maximum of x, is already there when ``peak_known``).

    softmax puts exp(0)·(1/S) = 1/S on a row's largest entry, which gives its sum S without a second exp
    pass; the sum of the written probabilities (1 up to the rounding of softmax's own accumulation)
    corrects S to torch.sum's more accurate cascaded sum.
    """
    if not peak_known:
        torch.amax(x, -1, out=stats.peak)
    torch._softmax(x, -1, False, out=out)
    torch.amax(out, -1, out=stats.largest_prob)
    torch.sum(out, -1, out=stats.prob_sum)
    return out


def _log_sum_exp(stats: SoftmaxStatistics) -> Tensor:
    """log Σ_v exp(x_v) per row from ``_softmax_with_stats``'s statistics, in float64."""
    peak, largest_prob, prob_sum = (statistic.double() for statistic in stats)
    return peak + prob_sum.log() - largest_prob.log()


class FusedPasses(NamedTuple):
    """What the forward passes of ``_FusedKD`` leave: the student's softmax ``probs`` p (hard target only),
    ``tempered_probs`` D = p_T - q (p_T for a top-k teacher; None when it is p), the row ``stats``, the top-k
    teacher's ``q`` and ``log_q`` [N, k] and the tempered student logits ``picked`` at its k tokens."""

    probs: Optional[Tensor]
    tempered_probs: Optional[Tensor]
    stats: RowStatistics
    q: Optional[Tensor]
    log_q: Optional[Tensor]
    picked: Optional[Tensor]


def _fused_passes(
    student, *, target, teacher_logits, topk_indices, topk_logits, temperature, compiled, teacher_log_probs=None
) -> FusedPasses:
    """The forward passes of ``_FusedKD``, from the ``compiled`` row kernel (``lskd.cpu_kernel.row_kernel``),
    or from eager row chunks when it is None."""
    rows, vocab = student.shape
    sparse = topk_indices is not None
    hard_loss = target is not None
    shared = hard_loss and temperature == 1  # p_T = p
    compute = torch.float64 if compiled is not None else torch.promote_types(student.dtype, torch.float32)
    table = torch.empty(13, rows, dtype=compute, device=student.device)
    stats = RowStatistics.over(table)
    buffers = {"dtype": torch.promote_types(student.dtype, torch.float32), "device": student.device}
    probs = torch.empty(rows, vocab, **buffers) if hard_loss else None
    tempered_probs = None if sparse and shared else torch.empty(rows, vocab, **buffers)
    q = log_q = picked = None
    if sparse:  # the top-k teacher's log q: given (its own temperature, a tail column), or from its logits at T
        if teacher_log_probs is None:
            log_q = F.log_softmax(topk_logits.to(buffers["dtype"]) / temperature, dim=-1)
        else:
            log_q = teacher_log_probs.to(buffers["dtype"])
        q = log_q.exp()
    if compiled is not None:
        compiled.kd_rows(student, teacher_logits, temperature, probs, tempered_probs, table)
        if hard_loss:
            stats.gold.copy_(student.gather(-1, target[:, None]).squeeze(-1))
        if sparse:
            picked = student.gather(-1, topk_indices) / temperature
    else:
        picked = _eager_passes(
            student,
            target=target,
            teacher_logits=teacher_logits,
            topk_indices=topk_indices,
            temperature=temperature,
            probs=probs,
            tempered_probs=tempered_probs,
            stats=stats,
        )
    return FusedPasses(probs, tempered_probs, stats, q, log_q, picked)


def _eager_passes(student, *, target, teacher_logits, topk_indices, temperature, probs, tempered_probs, stats):
    """``_fused_passes`` in cache-sized row chunks of torch operations, filling ``probs``, ``tempered_probs``
    and ``stats``; returns the top-k teacher's picked tempered student logits."""
    rows, vocab = student.shape
    device = student.device
    compute = stats.gold.dtype
    sparse = topk_indices is not None
    hard_loss = target is not None
    shared = hard_loss and temperature == 1
    picked = torch.empty(rows, topk_indices.size(-1), dtype=compute, device=device) if sparse else None
    step = _chunk_rows(device, vocab)
    scratch = torch.empty(4, min(step, rows), vocab, dtype=compute, device=device)
    for start in range(0, rows, step):
        chunk = slice(start, start + step)
        tempered, teacher_tempered, teacher_probs, product = scratch[:, : min(step, rows - start)]
        logits = student[chunk].to(compute)
        if temperature == 1:
            tempered = logits
        else:
            torch.div(logits, temperature, out=tempered)
        peak_known = hard_loss and not shared
        if peak_known:
            _softmax_with_stats(logits, probs[chunk], stats.plain.rows(chunk))
            # max(s/T) = max(s)/T exactly: rounding a division by T > 0 keeps the order of the entries.
            torch.div(stats.plain.peak[chunk], temperature, out=stats.tempered.peak[chunk])
        probs_t = probs[chunk] if shared else tempered_probs[chunk]
        _softmax_with_stats(tempered, probs_t, stats.tempered.rows(chunk), peak_known)
        torch.sum(logits, -1, out=stats.logit_sum[chunk])  # also tells rows with a NaN or +inf logit (see _FusedKD)
        if hard_loss:
            torch.gather(logits, -1, target[chunk, None], out=stats.gold[chunk, None])
        if sparse:
            torch.gather(tempered, -1, topk_indices[chunk], out=picked[chunk])
            continue
        teacher = teacher_logits[chunk]
        if teacher.dtype != compute:
            teacher = teacher_tempered.copy_(teacher)
        if temperature != 1:
            teacher = torch.div(teacher, temperature, out=teacher_tempered)
        teacher_q = _softmax_with_stats(teacher, teacher_probs, stats.teacher.rows(chunk))
        _row_dot(teacher_q, teacher, product, stats.q_teacher[chunk])
        _row_dot(teacher_q, tempered, product, stats.q_student[chunk])
        torch.sub(probs_t, teacher_q, out=tempered_probs[chunk])  # D = p_T - q
    return picked


class _FusedKD(torch.autograd.Function):
    """Per-row LS-NLL, NLL, T²·CE and T²·KL of student logits against a teacher.

    Autograd over the plain formulas keeps several [tokens, V] float32 intermediates alive and makes
    several passes over each. Here the forward (the compiled row kernel, or eager cache-sized row chunks)
    makes one exponential pass per distribution (student, tempered student, teacher) and reduces every term
    to row statistics (log-sum-exps and row dot products, combined in float64 afterwards). It keeps the student's
    softmax p and ``D = p_T - q`` (p_T for a top-k teacher, whose q is [tokens, k]); the backward turns
    them into the gradient in place, ``d/ds = c_hard·(p - y_smooth) + c_nll·(p - onehot) + c_kd·T·(p_T - q)``,
    without another exp, so the loss holds at most two [tokens, V] buffers where autograd over
    log_softmax needs three.
    """

    @staticmethod
    def forward(
        ctx,
        student,
        target,
        mask,
        teacher_logits,
        topk_indices,
        topk_logits,
        temperature,
        smoothing,
        convention,
        kernel,
        teacher_log_probs=None,
    ):
        vocab = student.size(-1)
        compiled = row_kernel(kernel, student, teacher_logits)  # decided once: the backward uses the same passes
        probs, tempered_probs, stats, q, log_q, picked = _fused_passes(
            student,
            target=target,
            teacher_logits=teacher_logits,
            topk_indices=topk_indices,
            topk_logits=topk_logits,
            temperature=temperature,
            compiled=compiled,
            teacher_log_probs=teacher_log_probs,
        )
        lse_t = _log_sum_exp(stats.tempered)
        dense_factor = None
        if teacher_log_probs is not None and teacher_log_probs.size(-1) > topk_indices.size(-1):
            p_t = tempered_probs if tempered_probs is not None else probs
            cross_entropy, kl, q, dense_factor = _tail_terms(p_t, topk_indices, picked, teacher_log_probs, lse_t)
        elif q is not None:
            cross_entropy = lse_t - (q * picked).nansum(-1).double()
            kl = cross_entropy + (q * log_q).sum(-1).double()  # over k entries: no large cancellation
        else:
            # softmax's own sum is less accurate than torch.sum's: dividing the dot products by the written q's
            # sum (the teacher's prob_sum statistic) removes the shared error of a row's q.
            q_sum = stats.teacher.prob_sum.double()
            cross_entropy = lse_t - stats.q_student.double() / q_sum
            # From row statistics each accurate in absolute terms, their difference taken in float64, so the
            # KL of two close distributions (T = 64) keeps its digits.
            kl = (lse_t - _log_sum_exp(stats.teacher)) + (stats.q_teacher.double() - stats.q_student.double()) / q_sum
        outputs = [cross_entropy * temperature**2, kl * temperature**2]
        if target is not None:
            lse = lse_t if temperature == 1 else _log_sum_exp(stats.plain)
            nll = lse - stats.gold.double()
            hard = _smoothed(nll, lambda: stats.logit_sum.double() - vocab * lse, smoothing, vocab, convention)
            outputs = [hard, nll] + outputs
        # A NaN or +inf student logit (the row's logit sum is NaN or +inf), or a row of -inf only, leaves the row
        # without a distribution; each pass would show its own partial pattern of NaN and inf there, so every
        # term and every gradient entry of such a row is NaN on both.
        no_distribution = stats.logit_sum.isnan() | stats.logit_sum.eq(math.inf) | stats.tempered.peak.eq(-math.inf)
        ctx.poison = torch.where(no_distribution, math.nan, 0.0)
        outputs = torch.stack(outputs) + ctx.poison
        if mask is not None:
            outputs.masked_fill_(~mask, 0.0)
        outputs = outputs.to(torch.promote_types(student.dtype, torch.float32))
        ctx.save_for_backward(student, target, mask, q)
        # Plain attributes, not saved tensors: the backward hands the buffers on as the gradient (a saved
        # tensor still referenced there would make autograd copy it), and teachers often run in inference
        # mode, whose tensors cannot be saved; the teacher is only read again for a second backward.
        ctx.buffers = (probs, tempered_probs)
        ctx.teacher = (teacher_logits, topk_indices, topk_logits)
        ctx.settings = (temperature, smoothing, convention, compiled)
        ctx.dense_factor = dense_factor
        if target is None:
            return None, None, outputs[0], outputs[1]
        return tuple(outputs)

    @staticmethod
    def backward(ctx, grad_hard, grad_nll, grad_ce, grad_kl):
        student, target, mask, q = ctx.saved_tensors
        teacher_logits, topk_indices, topk_logits = ctx.teacher
        temperature, smoothing, convention, compiled = ctx.settings
        if ctx.buffers is None:  # a second backward (retain_graph): the first one used the buffers up
            passes = _fused_passes(
                student,
                target=target,
                teacher_logits=teacher_logits,
                topk_indices=topk_indices,
                topk_logits=topk_logits,
                temperature=temperature,
                compiled=compiled,
            )
            ctx.buffers = (passes.probs, passes.tempered_probs)
        probs, tempered_probs = ctx.buffers
        ctx.buffers = None
        grad = tempered_probs if probs is None else probs
        rows, vocab = grad.shape
        zeros = torch.zeros(rows, dtype=grad.dtype, device=grad.device)
        grad_hard, grad_nll, grad_ce, grad_kl = (
            zeros if g is None else g for g in (grad_hard, grad_nll, grad_ce, grad_kl)
        )
        gold_weight, other_weight = _smoothed_target_weights(smoothing, vocab, convention)
        coef_kd = (grad_ce + grad_kl) * temperature
        coef_sparse = coef_kd
        if ctx.dense_factor is not None:  # the tail bucket scales the tempered probabilities outside the k tokens
            coef_kd = coef_kd * ctx.dense_factor.to(coef_kd.dtype)
        coef_probs = grad_hard + grad_nll
        coef_gold = grad_hard * (gold_weight - other_weight) + grad_nll
        coef_other = grad_hard * other_weight
        if mask is not None:  # masked rows get zero coefficients, hence a zero gradient
            coef_kd, coef_sparse, coef_probs, coef_gold, coef_other = (
                c * mask for c in (coef_kd, coef_sparse, coef_probs, coef_gold, coef_other)
            )
        poison = ctx.poison.to(grad.dtype)  # NaN on rows with a NaN or +inf logit: the whole row's gradient
        coef_kd, coef_sparse, coef_probs = coef_kd + poison, coef_sparse + poison, coef_probs + poison
        if probs is not None and tempered_probs is None:
            coef_probs = coef_probs + coef_kd  # top-k teacher at T = 1: p_T = p
        # grad <- c_probs·p - c_other + c_kd·D per row (c_kd·D alone without a hard target), then the sparse terms
        coef_kd, coef_probs, coef_other = (c.contiguous() for c in (coef_kd, coef_probs, coef_other))
        shift = coef_other if other_weight != 0 else None
        if compiled is not None:
            if probs is None:
                compiled.combine_rows(grad, coef_kd, None, None, None)
            else:
                second = (tempered_probs, coef_kd) if tempered_probs is not None else (None, None)
                compiled.combine_rows(grad, coef_probs, shift, *second)
        else:
            step = _chunk_rows(grad.device, vocab)
            for start in range(0, rows, step):
                chunk = slice(start, start + step)
                g = grad[chunk]
                if probs is None:
                    g.mul_(coef_kd[chunk, None])
                    continue
                g.mul_(coef_probs[chunk, None])
                if shift is not None:
                    g.sub_(shift[chunk, None])
                if tempered_probs is not None:
                    g.addcmul_(tempered_probs[chunk], coef_kd[chunk, None])
        if q is not None:
            grad.scatter_add_(-1, topk_indices, -coef_sparse[:, None] * q)
        if target is not None:
            grad.scatter_add_(-1, target[:, None], -coef_gold[:, None])
        return grad.to(student.dtype), None, None, None, None, None, None, None, None, None, None


def _fused_kd(
    student,
    *,
    target,
    mask,
    teacher_logits,
    topk_indices,
    topk_logits,
    temperature,
    smoothing,
    convention,
    kernel,
    teacher_log_probs=None,
):
    """``_FusedKD`` by keyword (autograd functions take positional arguments only): per row LS-NLL, NLL,
    T²·CE and T²·KL, the first two None without a ``target``."""
    return _FusedKD.apply(
        student,
        target,
        mask,
        teacher_logits,
        topk_indices,
        topk_logits,
        temperature,
        smoothing,
        convention,
        kernel,
        teacher_log_probs,
    )


def _tail_terms(p_t, topk_indices, picked, teacher_log_probs, lse_t):
    """T²-less CE and KL of the forward KL over k + 1 outcomes (the k tokens and the tail), the sparse
    gradient weights and the factor on the tempered probabilities, from the fused passes' buffers.

    With r = q_tail / p_tail, d(CE)/dz = (1 − r)·p_T everywhere, plus r·p_T − q at the k tokens. The
    student's tail mass is the sum of its probabilities outside the k tokens (one pass, no cancellation)."""
    k = topk_indices.size(-1)
    on_topk = p_t.gather(-1, topk_indices)
    p_t.scatter_(-1, topk_indices, 0.0)
    outside = p_t.sum(-1).double()  # a cascaded sum of positive terms: no float64 copy needed
    p_t.scatter_(-1, topk_indices, on_topk)
    # Over the sum of the written probabilities, which normalises the rounding that they share.
    log_p_tail = outside.log() - (outside + on_topk.sum(-1, dtype=torch.float64)).log()
    log_p_k = picked.double() - lse_t[:, None]
    log_q = teacher_log_probs.double()
    log_q_k, log_q_tail = log_q[:, :k], log_q[:, k]
    # No outcome is left outside the k tokens (k = V, or -inf logits): the teacher's tail is its rounding.
    log_q_tail = torch.where(outside == 0, -math.inf, log_q_tail)
    q_k, q_tail = log_q_k.exp(), log_q_tail.exp()
    tail_ce = torch.where(q_tail > 0, -q_tail * log_p_tail, 0.0)
    cross_entropy = (q_k * -log_p_k).nansum(-1) + tail_ce
    kl = cross_entropy + (q_k * log_q_k).nansum(-1) + torch.where(q_tail > 0, q_tail * log_q_tail, 0.0)
    ratio = torch.where(outside > 0, q_tail / log_p_tail.exp(), 0.0)
    sparse = q_k - ratio[:, None] * log_p_k.exp()
    return cross_entropy, kl, sparse.to(p_t.dtype), (1.0 - ratio).to(p_t.dtype)


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
    kernel: str = "auto",
) -> KDTerms:
    """``T² · CE(softmax(teacher/T), log_softmax(student/T))`` and ``T² · KL`` per row of ``student_logits``.

    Give either the teacher's full ``teacher_logits`` [N, V] or its top-k as ``teacher_topk_indices`` and
    ``teacher_topk_logits`` [N, k]; a top-k teacher is renormalised over its k entries at temperature T.
    Rows where ``mask`` is False are zero. ``kernel`` is one of ``lskd.cpu_kernel.KD_KERNELS``.
    """
    check_temperature(temperature)
    _check_teacher_arguments(teacher_logits, teacher_topk_indices, teacher_topk_logits)
    check_kernel(kernel)
    indices = None if teacher_topk_indices is None else teacher_topk_indices.long()
    _, _, cross_entropy, kl = _fused_kd(
        student_logits,
        target=None,
        mask=mask,
        teacher_logits=teacher_logits,
        topk_indices=indices,
        topk_logits=teacher_topk_logits,
        temperature=temperature,
        smoothing=0.0,
        convention="uniform",
        kernel=kernel,
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
    kernel: str = "auto",
    teacher_topk_log_probs: Optional[Tensor] = None,
) -> KDObjective:
    """The student's loss of label smoothing + knowledge distillation, per row (token or image)::

        loss = w · T² · CE(q, p_T) + (1 - w) · CE(y_a, p)
        p = softmax(s),  p_T = softmax(s / T),  q = softmax(t / T),  CE(a, b) = -Σ_v a_v · log b_v

    the distillation of Hinton, Vinyals & Dean (2015), mixed with cross-entropy against the label-smoothed
    targets y_a of Szegedy et al. (2016), as Tan et al. (2019) train NMT students and Chandrasegaran et al.
    (2022) study the two together; with w = 1 it is that paper's pure KD loss of the vision students (summed
    here; divide by the batch size for its ``batchmean``). The T² keeps the gradient's scale as T grows
    (Hinton et al., section 2). ``lskd.reference.kd_objective`` is the same loss in plain autograd, the
    specification this fused one is tested against.

    - ``student_logits`` s [N, V]: any float dtype; the arithmetic is float32 or better.
    - ``target`` [N]: the gold token (or class) of each row.
    - ``temperature`` T > 0: softens student and teacher alike.
    - ``kd_weight`` w in [0, 1]: the KD term's share; 1 - w goes to the label-smoothed cross-entropy.
    - ``smoothing`` a in [0, 1): the label smoothing of y_a (see ``convention``).
    - ``teacher_logits`` t [N, V], or a top-k teacher as ``teacher_topk_indices`` and ``teacher_topk_logits``
      [N, k] (``topk_teacher``): q is then renormalised over the k tokens and the student keeps its
      full-vocabulary p_T there (Tan et al.'s top-k distillation). Give exactly one of the two.
    - ``ignore_index``: rows whose target is it (padding) are 0 and get no gradient.
    - ``convention``: ``uniform`` y_a = (1 - a)·onehot + a/V (Szegedy et al., the paper); ``fairseq`` 1 - a on
      the gold token and a/(V - 1) on each other one (``fairseq_epsilon`` converts).
    - ``reduce``: True sums the rows; False keeps one value per row (fairseq's ``reduce`` argument).
    - ``kernel``: ``auto`` runs float32 CPU rows through the compiled row kernel where it builds, ``eager``
      never, ``cpu`` always (``lskd.cpu_kernel``); the values agree to float32 rounding.
    - ``teacher_topk_log_probs`` [N, k]: replaces the top-k teacher's log q (e.g. at its own temperature);
      with k + 1 columns the last is the teacher's tail, the mass outside its k tokens, and the KD term is
      the forward KL over those k + 1 outcomes (``lskd.transfer_loss``).

    Returns the summed (or per-row) ``loss``, the plain NLL of the gold token ``nll`` (what fairseq logs)
    and ``kd_kl`` = T²·KL(q ‖ p_T), which differs from T²·CE(q, p_T) by the teacher's entropy and reads 0
    when the student matches the teacher.

    References:
    G. Hinton, O. Vinyals, J. Dean. Distilling the Knowledge in a Neural Network. NIPS Deep Learning
    Workshop, 2015. arXiv:1503.02531.
    C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna. Rethinking the Inception Architecture for
    Computer Vision. CVPR 2016 (label smoothing, section 7).
    X. Tan, Y. Ren, D. He, T. Qin, Z. Zhao, T.-Y. Liu. Multilingual Neural Machine Translation with Knowledge
    Distillation. ICLR 2019. arXiv:1902.10461.
    K. Chandrasegaran, N.-T. Tran, Y. Zhao, N.-M. Cheung. Revisiting Label Smoothing and Knowledge
    Distillation Compatibility: What was Missing? ICML 2022, PMLR 162:2890-2916. arXiv:2206.14532.
    """
    check_kd_weight(kd_weight)
    check_smoothing(smoothing)
    check_temperature(temperature)
    _check_teacher_arguments(teacher_logits, teacher_topk_indices, teacher_topk_logits)
    check_convention(convention)
    check_kernel(kernel)
    mask = target.ne(ignore_index) if ignore_index is not None else None
    indices = None if teacher_topk_indices is None else teacher_topk_indices.long()
    hard, nll, cross_entropy, kl = _fused_kd(
        student_logits,
        target=target,
        mask=mask,
        teacher_logits=teacher_logits,
        topk_indices=indices,
        topk_logits=teacher_topk_logits,
        temperature=temperature,
        smoothing=smoothing,
        convention=convention,
        kernel=kernel,
        teacher_log_probs=teacher_topk_log_probs,
    )
    loss = kd_weight * cross_entropy + (1.0 - kd_weight) * hard
    if not reduce:
        return KDObjective(loss=loss, nll=nll, kd_kl=kl)
    return KDObjective(loss=loss.sum(), nll=nll.sum(), kd_kl=kl.sum())
