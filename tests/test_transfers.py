"""Every transfer (divergence, temperatures, standardisation, top-k, tail) against its textbook formula
written out here in float64 (exp, sums and logs, autograd for the gradient), gradcheck, and the identities
the transfers must satisfy."""

import math

import pytest
import torch
import torch.nn.functional as F

from lskd.checks import DIVERGENCES
from lskd.divergences import Transfer, scale_of
from lskd.errors import InvalidConfig
from lskd.losses import distillation_terms, topk_teacher
from lskd.transfer_loss import TeacherRows, topk_teacher_rows, transfer_objective, transfer_terms

PAD = 1


def probabilities(logits, temperature, standardize=False):
    """exp(x'/T) / Σ exp(x'/T) per row in float64, x' = (x − mean)/sample std over the finite entries."""
    x = logits.double()
    if standardize:
        finite = torch.isfinite(x)
        values = torch.where(finite, x, 0.0)
        n = finite.sum(-1, keepdim=True)
        mean = values.sum(-1, keepdim=True) / n
        std = (torch.where(finite, x - mean, 0.0) ** 2).sum(-1, keepdim=True).div(n - 1).sqrt()
        x = torch.where(finite, (values - mean) / std, -math.inf)
    e = torch.exp(x / temperature - (x / temperature).max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def textbook(name, p, q, beta=0.5, skew=0.1):
    """The divergence of student p from teacher q per row, as the literature writes it."""

    def kl_of(a, b):
        return torch.where(a > 0, a * (torch.log(torch.where(a > 0, a, 1.0)) - torch.log(b)), 0.0).sum(-1)

    if name == "kl":
        return kl_of(q, p)
    if name == "reverse_kl":
        return kl_of(p, q)
    if name == "jsd":
        m = beta * q + (1 - beta) * p
        return beta * kl_of(q, m) + (1 - beta) * kl_of(p, m)
    if name == "tvd":
        return 0.5 * (q - p).abs().sum(-1)
    if name == "skew_kl":
        return kl_of(q, skew * q + (1 - skew) * p)
    return kl_of(p, skew * p + (1 - skew) * q)


def reference(student, teacher, name, temperature, teacher_temperature=None, k=None, tail=False, standardize=False):
    """Scaled divergence per row in float64 with a float64 gradient: full teacher, top-k (the teacher
    renormalised over its k tokens; kl: the student's full probabilities there, else renormalised too), or
    top-k with the (k+1)-th outcome holding everything else."""
    s = student.detach().double().requires_grad_()
    p_full = probabilities(s, temperature, standardize)
    q_full = probabilities(teacher, teacher_temperature or temperature, standardize)
    if k is None:
        p, q = p_full, q_full
    else:
        idx = teacher.double().topk(k, -1).indices
        p_k, q_k = p_full.gather(-1, idx), q_full.gather(-1, idx)
        if tail and k == teacher.size(-1):  # nothing outside the k tokens: no tail outcome
            p, q = p_k, q_k
        elif tail:
            p = torch.cat([p_k, 1 - p_k.sum(-1, keepdim=True)], -1)
            q = torch.cat([q_k, (1 - q_k.sum(-1, keepdim=True)).clamp_min(0)], -1)
        else:
            q = q_k / q_k.sum(-1, keepdim=True)
            p = p_k if name == "kl" else p_k / p_k.sum(-1, keepdim=True)
    value = scale_of(name, temperature) * textbook(name, p, q)
    (grad,) = torch.autograd.grad(value.sum(), s)
    return value.detach(), grad


def teacher_rows(teacher, transfer, k=None):
    return TeacherRows(logits=teacher) if k is None else topk_teacher_rows(teacher, k, transfer)


def ours(student, teacher, transfer, k=None):
    s = student.detach().clone().requires_grad_()
    terms = transfer_terms(s, teacher_rows(teacher, transfer, k), transfer)
    terms.loss.sum().backward()
    return terms, s.grad


def logits(rows, vocab, seed, dtype=torch.float32, spread=3.0):
    generator = torch.Generator().manual_seed(seed)
    student = (torch.randn(rows, vocab, generator=generator) * spread).to(dtype)
    teacher = (torch.randn(rows, vocab, generator=generator) * spread).to(dtype)
    return student, teacher


def assert_matches(value, grad, exact_value, exact_grad, rtol):
    torch.testing.assert_close(value.double(), exact_value, rtol=rtol, atol=rtol * exact_value.abs().max().item())
    scale = exact_grad.abs().max().item()
    torch.testing.assert_close(grad.double(), exact_grad, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("vocab", [13, 1000])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 64.0])
def test_full_teacher_value_and_gradient_match_the_textbook(name, vocab, temperature):
    student, teacher = logits(6, vocab, seed=vocab)
    transfer = Transfer(name, temperature)
    terms, grad = ours(student, teacher, transfer)
    exact, exact_grad = reference(student, teacher, name, temperature)
    assert_matches(terms.divergence, grad, exact, exact_grad, rtol=2e-3 if temperature == 64 else 2e-4)


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(name, dtype):
    student, teacher = logits(6, 257, seed=3, dtype=dtype)
    for temperature in (1.0, 64.0):
        terms, grad = ours(student, teacher, Transfer(name, temperature))
        assert terms.divergence.dtype == torch.float32 and grad.dtype == dtype
        exact, exact_grad = reference(student, teacher, name, temperature)
        assert_matches(terms.divergence, grad, exact, exact_grad, rtol=1e-2)


@pytest.mark.parametrize("name", DIVERGENCES)
@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 2.0, 64.0])
def test_topk_teacher_matches_the_textbook(name, tail, temperature):
    student, teacher = logits(6, 37, seed=5)
    transfer = Transfer(name, temperature, tail=tail)
    terms, grad = ours(student, teacher, transfer, k=4)
    exact, exact_grad = reference(student, teacher, name, temperature, k=4, tail=tail)
    assert_matches(terms.divergence, grad, exact, exact_grad, rtol=2e-3 if temperature == 64 else 2e-4)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_separate_teacher_temperature_and_standardisation_match_the_textbook(name):
    student, teacher = logits(5, 29, seed=7)
    for standardize in (False, True):
        for k, tail in ((None, False), (5, False), (5, True)):
            transfer = Transfer(name, 2.0, teacher_temperature=4.0, standardize=standardize, tail=tail)
            terms, grad = ours(student, teacher, transfer, k=k)
            exact, exact_grad = reference(student, teacher, name, 2.0, 4.0, k=k, tail=tail, standardize=standardize)
            assert_matches(terms.divergence, grad, exact, exact_grad, rtol=2e-4)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_minus_infinity_logits_stay_finite_and_are_outcomes_of_probability_zero(name):
    student, teacher = logits(4, 21, seed=9)
    masked = [3, 10, 20]
    student[:, masked] = -math.inf
    teacher[:, masked] = -math.inf
    kept = [v for v in range(21) if v not in masked]
    for standardize in (False, True):
        for k, tail in ((None, False), (4, False), (4, True), (18, True)):
            transfer = Transfer(name, 2.0, standardize=standardize, tail=tail)
            terms, grad = ours(student, teacher, transfer, k=k)
            assert torch.isfinite(terms.divergence).all() and torch.isfinite(grad).all()
            assert (grad[:, masked] == 0).all()
            exact, exact_grad = reference(
                student[:, kept], teacher[:, kept], name, 2.0, k=k, tail=tail, standardize=standardize
            )
            assert_matches(terms.divergence, grad[:, kept], exact, exact_grad, rtol=2e-4)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_gradcheck_in_float64(name):
    student, teacher = logits(3, 7, seed=11, dtype=torch.float64)
    student.requires_grad_()
    for standardize, k, tail in ((False, None, False), (True, None, False), (False, 3, False), (True, 3, True)):
        transfer = Transfer(name, 1.5, teacher_temperature=2.5, standardize=standardize, tail=tail)
        rows = teacher_rows(teacher, transfer, k)
        assert torch.autograd.gradcheck(lambda s, r=rows, t=transfer: transfer_terms(s, r, t).loss, (student,))


@pytest.mark.parametrize("name", DIVERGENCES)
def test_zero_when_the_student_is_the_teacher(name):
    _, teacher = logits(6, 50, seed=13)
    for temperature in (1.0, 64.0):
        for standardize, k, tail in ((False, None, False), (True, None, False), (False, 5, True), (True, 5, True)):
            transfer = Transfer(name, temperature, standardize=standardize, tail=tail)
            terms, _ = ours(teacher, teacher, transfer, k=k)
            assert terms.divergence.abs().max() < 1e-4 * transfer.scale


def test_jsd_is_symmetric_at_half_and_tends_to_the_kls_at_its_ends():
    student, teacher = logits(6, 40, seed=17, dtype=torch.float64)  # JSD_β / β at β = 1e-7 needs the digits
    half = Transfer("jsd", 2.0, jsd_beta=0.5)
    there, _ = ours(student, teacher, half)
    back, _ = ours(teacher, student, half)
    torch.testing.assert_close(there.divergence, back.divergence, rtol=1e-5, atol=1e-6)
    forward, _ = ours(student, teacher, Transfer("kl", 2.0, teacher_temperature=2.0, standardize=False))
    reverse, _ = ours(student, teacher, Transfer("reverse_kl", 2.0))
    small = 1e-7
    near_forward, _ = ours(student, teacher, Transfer("jsd", 2.0, jsd_beta=small))
    near_reverse, _ = ours(student, teacher, Transfer("jsd", 2.0, jsd_beta=1 - small))
    torch.testing.assert_close(near_forward.divergence / small, forward.divergence, rtol=2e-3, atol=1e-4)
    torch.testing.assert_close(near_reverse.divergence / small, reverse.divergence, rtol=2e-3, atol=1e-4)


def test_skew_kls_tend_to_the_kls_as_the_skew_vanishes():
    student, teacher = logits(6, 40, seed=19)
    for skewed, plain in (("skew_kl", "kl"), ("skew_reverse_kl", "reverse_kl")):
        near, _ = ours(student, teacher, Transfer(skewed, 3.0, skew=1e-6))
        exact, _ = ours(student, teacher, Transfer(plain, 3.0))
        torch.testing.assert_close(near.divergence, exact.divergence, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["jsd", "skew_kl", "skew_reverse_kl"])
def test_mixtures_stay_finite_where_both_probabilities_underflow_float32(name):
    """Log-probabilities far below float32's smallest normal (about −87) on both sides: the mixture's floor
    keeps value and gradient finite and equal to the float64 formula."""
    student, teacher = logits(6, 50, seed=61, spread=60.0)
    terms, grad = ours(student, teacher, Transfer(name, 0.5))
    exact, exact_grad = reference(student, teacher, name, 0.5)
    assert torch.isfinite(terms.divergence).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(terms.divergence.double(), exact, rtol=1e-5, atol=1e-6)
    # the saturated rows' exact gradient is below 1e-8: float32's rounding of the probabilities bounds ours
    torch.testing.assert_close(grad.double(), exact_grad, rtol=1e-4, atol=1e-6)


def test_tvd_is_between_zero_and_one():
    student, teacher = logits(50, 30, seed=23, spread=20.0)
    for temperature in (0.5, 1.0, 8.0):
        terms, _ = ours(student, teacher, Transfer("tvd", temperature))
        unscaled = terms.divergence / temperature
        assert (unscaled >= 0).all() and (unscaled <= 1 + 1e-6).all() and unscaled.max() > 0.9


@pytest.mark.parametrize("name", DIVERGENCES)
def test_topk_with_k_equal_vocabulary_is_the_full_teacher_with_or_without_tail(name):
    student, teacher = logits(6, 23, seed=29)
    for standardize in (False, True):
        full, full_grad = ours(student, teacher, Transfer(name, 2.0, standardize=standardize))
        for tail in (False, True):
            sparse, sparse_grad = ours(student, teacher, Transfer(name, 2.0, standardize=standardize, tail=tail), k=23)
            torch.testing.assert_close(sparse.divergence, full.divergence, rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(sparse_grad, full_grad, rtol=1e-4, atol=1e-6)


def test_the_tail_bucket_holds_the_mass_outside_the_k_tokens():
    _, teacher = logits(6, 23, seed=31)
    transfer = Transfer("tvd", 3.0, tail=True)
    rows = topk_teacher_rows(teacher, 4, transfer)
    q = probabilities(teacher, 3.0)
    outside = 1 - q.gather(-1, rows.topk_indices).sum(-1)
    # a uniform student puts (V − k)/V outside; TVD over k + 1 outcomes is ½ Σ|q − p| over them
    uniform = torch.zeros_like(teacher)
    terms, _ = ours(uniform, teacher, transfer, k=4)
    q_k = q.gather(-1, rows.topk_indices)
    expected = 0.5 * ((q_k - 1 / 23).abs().sum(-1) + (outside - 19 / 23).abs())
    torch.testing.assert_close(terms.divergence.double() / 3.0, expected, rtol=1e-5, atol=1e-6)
    full_rows = topk_teacher_rows(teacher, 23, transfer)
    assert full_rows.log_normalizer is not None  # k = V: the teacher's tail is empty, tested above


@pytest.mark.parametrize("name", DIVERGENCES)
def test_standardisation_makes_the_loss_invariant_to_shifting_and_scaling_rows(name):
    student, teacher = logits(6, 31, seed=37)
    shift = torch.randn(6, 1) * 5
    factor = torch.rand(6, 1) * 4 + 0.25
    for k, tail in ((None, False), (6, True)):
        transfer = Transfer(name, 2.0, standardize=True, tail=tail)
        base, base_grad = ours(student, teacher, transfer, k=k)
        moved, moved_grad = ours(student * factor + shift, teacher * factor.flip(0) - shift, transfer, k=k)
        torch.testing.assert_close(moved.divergence, base.divergence, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(moved_grad * factor, base_grad, rtol=1e-3, atol=1e-5)  # d/ds scales by 1/factor


@pytest.mark.parametrize("name", DIVERGENCES)
def test_scaling_keeps_the_gradient_size_as_the_temperature_grows(name):
    """The stated scale (T² for the KLs, T for TVD) makes the student's gradient settle at high T; the
    other power would let it shrink or grow by 2x per doubling of T."""
    student, teacher = logits(8, 100, seed=41)
    norms = [ours(student, teacher, Transfer(name, t))[1].norm().item() for t in (32.0, 64.0)]
    assert norms[1] / norms[0] == pytest.approx(1.0, abs=0.05)


def test_generic_forward_kl_equals_the_fused_loss():
    """The chunked path computes kl when a setting leaves the fused one (a teacher temperature, given equal
    here); both must agree with each other in value and gradient, full and top-k."""
    student, teacher = logits(7, 64, seed=43)
    for k in (None, 5):
        generic, generic_grad = ours(student, teacher, Transfer("kl", 3.0, teacher_temperature=3.0 + 1e-12), k=k)
        s = student.clone().requires_grad_()
        if k is None:
            fused = distillation_terms(s, 3.0, teacher_logits=teacher)
        else:
            indices, values = topk_teacher(teacher, k)
            fused = distillation_terms(s, 3.0, teacher_topk_indices=indices, teacher_topk_logits=values)
        fused.kl.sum().backward()
        torch.testing.assert_close(generic.divergence, fused.kl, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(generic_grad, s.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_objective_mixes_the_label_smoothed_nll_and_masks_padding(name):
    student, teacher = logits(6, 17, seed=47)
    target = torch.tensor([2, 5, PAD, 7, 0, PAD])
    keep = target.ne(PAD)
    transfer = Transfer(name, 2.0)
    s = student.clone().requires_grad_()
    objective = transfer_objective(s, target, TeacherRows(logits=teacher), transfer, 0.7, 0.1, PAD, reduce=False)
    objective.loss.sum().backward()
    exact, exact_grad = reference(student[keep], teacher[keep], name, 2.0)
    s64 = student[keep].double().requires_grad_()
    hard = F.cross_entropy(s64, target[keep], label_smoothing=0.1, reduction="none")
    hard.sum().backward()
    minimised = exact
    if name == "kl":  # the fused forward KL minimises T²·CE = T²·(KL + the teacher's entropy)
        q = probabilities(teacher[keep], 2.0)
        minimised = exact - 4.0 * (q * q.log()).sum(-1)
    torch.testing.assert_close(
        objective.loss[keep].double(), 0.7 * minimised + 0.3 * hard.detach(), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(s.grad[keep].double(), 0.7 * exact_grad + 0.3 * s64.grad, rtol=1e-4, atol=1e-6)
    assert (objective.loss[~keep] == 0).all() and (s.grad[~keep] == 0).all()
    torch.testing.assert_close(objective.divergence[keep].double(), exact, rtol=1e-5, atol=1e-6)
    nll = -torch.log_softmax(student[keep].double(), -1).gather(-1, target[keep, None]).squeeze(-1)
    torch.testing.assert_close(objective.nll[keep].double(), nll, rtol=1e-5, atol=1e-6)
    reduced = transfer_objective(student, target, TeacherRows(logits=teacher), transfer, 0.7, 0.1, PAD)
    torch.testing.assert_close(reduced.loss, objective.loss.sum())
    kl_exact, _ = reference(student[keep], teacher[keep], "kl", 2.0)
    torch.testing.assert_close(objective.kd_kl[keep].double(), kl_exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", ["eager", "auto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_topk_forward_kl_with_tail_or_own_teacher_temperature_matches_the_textbook(kernel, dtype):
    """A top-k forward KL with a hard target takes the fused loss (its tail and teacher temperature come in
    as the teacher's log-probabilities): value, kd_kl and gradient against the float64 formula, padding
    masked, an empty tail (k = V) and a row whose tail mass is tiny included."""
    student, teacher = logits(6, 23, seed=59, dtype=dtype)
    student[3, :] = -10.0
    teacher[3, :] = -10.0
    student[3, :4], teacher[3, :4] = 10.0, 10.0  # k = 4 tokens hold all but about 1e-8 of both rows at T = 1
    target = torch.tensor([2, 5, PAD, 7, 0, PAD])
    keep = target.ne(PAD)
    for temperature, teacher_temperature, k, tail in (
        (2.0, None, 4, True),
        (1.0, 0.5, 4, True),
        (3.0, 4.0, 5, False),
        (2.0, None, 23, True),
    ):
        transfer = Transfer("kl", temperature, teacher_temperature=teacher_temperature, tail=tail)
        s = student.clone().requires_grad_()
        rows = topk_teacher_rows(teacher, k, transfer)
        objective = transfer_objective(s, target, rows, transfer, 1.0, 0.0, PAD, reduce=False, kernel=kernel)
        objective.loss.sum().backward()
        exact, exact_grad = reference(student[keep], teacher[keep], "kl", temperature, teacher_temperature, k, tail)
        rtol = 1e-2 if dtype == torch.bfloat16 else 1e-4
        assert_matches(objective.divergence[keep], s.grad[keep], exact, exact_grad, rtol)
        torch.testing.assert_close(objective.kd_kl, objective.divergence)
        assert (objective.loss[~keep] == 0).all() and (s.grad[~keep] == 0).all()
        generic, generic_grad = ours(student[keep], teacher[keep], transfer, k=k)
        torch.testing.assert_close(objective.divergence[keep].float(), generic.divergence.float(), rtol=rtol, atol=rtol)


def test_row_chunks_do_not_change_the_result(monkeypatch):
    student, teacher = logits(9, 40, seed=53)
    whole, whole_grad = ours(student, teacher, Transfer("jsd", 2.0))
    monkeypatch.setattr("lskd.transfer_loss.CPU_CHUNK_ELEMENTS", 80)  # two rows per chunk
    chunked, chunked_grad = ours(student, teacher, Transfer("jsd", 2.0))
    torch.testing.assert_close(chunked.divergence, whole.divergence)
    torch.testing.assert_close(chunked_grad, whole_grad)


def test_a_second_backward_recomputes_the_gradient():
    student, teacher = logits(4, 10, seed=59)
    s = student.clone().requires_grad_()
    loss = transfer_terms(s, TeacherRows(logits=teacher), Transfer("tvd", 2.0)).loss.sum()
    loss.backward(retain_graph=True)
    first = s.grad.clone()
    loss.backward()
    torch.testing.assert_close(s.grad, 2 * first)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(divergence="hellinger"), "must be one of kl, reverse_kl, jsd, tvd, skew_kl, skew_reverse_kl"),
        (dict(divergence="jsd", jsd_beta=0.0), "JSD beta must be in (0, 1)"),
        (dict(divergence="jsd", jsd_beta=1.0), "JSD beta must be in (0, 1)"),
        (dict(jsd_beta=float("nan")), "JSD beta must be in (0, 1)"),
        (dict(skew=1.5), "skew must be in (0, 1)"),
        (dict(teacher_temperature=0.0), "temperature must be > 0"),
        (dict(teacher_temperature=float("inf")), "finite"),
        (dict(teacher_temperature=1e13), "must be <= 1e+12"),
    ],
)
def test_bad_transfer_settings_are_refused(settings, message):
    with pytest.raises(InvalidConfig, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        Transfer(**settings)


def test_a_tail_or_standardisation_without_what_it_needs_is_refused():
    student, teacher = logits(2, 9, seed=61)
    indices, values = topk_teacher(teacher, 3)
    with pytest.raises(InvalidConfig, match="tail bucket is for a top-k teacher"):
        transfer_terms(student, TeacherRows(logits=teacher), Transfer(tail=True))
    with pytest.raises(InvalidConfig, match="full-row log-sum-exp"):
        transfer_terms(student, TeacherRows(topk_indices=indices, topk_logits=values), Transfer(tail=True))
    with pytest.raises(InvalidConfig, match="mean and std"):
        transfer_terms(student, TeacherRows(topk_indices=indices, topk_logits=values), Transfer(standardize=True))
