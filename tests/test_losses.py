"""The KD-loss core: its specification (``lskd.reference``) against float64 formulas written out here and
torch's own label smoothing, then the fused loss (eager passes and compiled row kernel) against that
specification, value and gradient, in every case the fused backward is derived for."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lskd import reference
from lskd.errors import InvalidConfig
from lskd.losses import distillation_terms, fairseq_epsilon, kd_objective, label_smoothed_nll, topk_teacher

PAD = 1
# Each test runs with the eager loss passes and with the compiled row kernel (fixtures.loss_paths.loss_passes).
pytestmark = pytest.mark.usefixtures("loss_passes")


def float64_kd(student, teacher, temperature, k=None):
    """T² · Σ q log(1/p) and T² · Σ q log(q/p), float64, written out term by term; with ``k`` q is the
    teacher renormalised over its k largest logits and the sums run over those k tokens."""
    ce, kl = [], []
    for s_row, t_row in zip(student.double().tolist(), teacher.double().tolist()):
        s_exp = [math.exp(v / temperature) for v in s_row]
        p = [v / sum(s_exp) for v in s_exp]
        tokens = sorted(range(len(t_row)), key=lambda v: -t_row[v])[:k]
        t_exp = {v: math.exp(t_row[v] / temperature) for v in tokens}
        q = {v: e / sum(t_exp.values()) for v, e in t_exp.items()}
        ce.append(temperature**2 * sum(-q[v] * math.log(p[v]) for v in tokens))
        kl.append(temperature**2 * sum(q[v] * math.log(q[v] / p[v]) for v in tokens if q[v] > 0))
    return torch.tensor(ce, dtype=torch.float64), torch.tensor(kl, dtype=torch.float64)


def float64_smoothed_nll(student, target, smoothing, convention):
    """Σ_v y_v · log(1/p_v) with the smoothed targets y of ``convention``, float64, term by term."""
    losses = []
    for row, gold in zip(student.double().tolist(), target.tolist()):
        vocab = len(row)
        total = sum(math.exp(x) for x in row)
        if convention == "uniform":  # (1 - a)·onehot + a/V
            on_gold, other = 1 - smoothing + smoothing / vocab, smoothing / vocab
        else:  # 1 - a on the gold token, a/(V - 1) on each other one
            on_gold, other = 1 - smoothing, smoothing / (vocab - 1)
        weights = [on_gold if v == gold else other for v in range(vocab)]
        losses.append(sum(-w * math.log(math.exp(x) / total) for w, x in zip(weights, row)))
    return torch.tensor(losses, dtype=torch.float64)


def teacher_given(teacher, k=None, tail=False, teacher_temperature=None):
    """The teacher arguments of the losses: full logits, or its top k (with its log-probabilities at its own
    temperature, renormalised over the k tokens or with the tail as a (k+1)-th column)."""
    if k is None:
        return {"teacher_logits": teacher}
    indices, values = topk_teacher(teacher, k)
    given = {"teacher_topk_indices": indices, "teacher_topk_logits": values}
    if teacher_temperature is not None or tail:
        log_q = torch.log_softmax(teacher.double() / (teacher_temperature or 1.0), -1).gather(-1, indices)
        if tail:
            log_q = torch.cat([log_q, torch.log1p(-log_q.exp().sum(-1, keepdim=True))], -1)
        else:
            log_q = log_q.log_softmax(-1)
        given["teacher_topk_log_probs"] = log_q
    return given


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 11, generator=generator) * 3
    teacher = torch.randn(6, 11, generator=generator) * 3
    target = torch.tensor([2, 5, PAD, 7, 0, PAD])
    return student, teacher, target


# The specification against formulas written out here.


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 64.0])
@pytest.mark.parametrize("k", [None, 4])
def test_reference_kd_terms_are_the_float64_formula(logits, temperature, k):
    student, teacher, _ = (t.double() if t.is_floating_point() else t for t in logits)
    terms = reference.distillation_terms(student, temperature, **teacher_given(teacher, k))
    cross_entropy, kl = float64_kd(student, teacher, temperature, k)
    torch.testing.assert_close(terms.cross_entropy, cross_entropy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms.kl, kl, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("convention", ["uniform", "fairseq"])
def test_reference_smoothed_nll_is_the_float64_formula(logits, convention):
    student, _, target = logits
    hard, nll = reference.label_smoothed_nll(student.double(), target, 0.2, convention)
    torch.testing.assert_close(hard, float64_smoothed_nll(student, target, 0.2, convention))
    torch.testing.assert_close(nll, float64_smoothed_nll(student, target, 0.0, convention))


def test_reference_objective_mixes_the_terms_and_zeroes_padding(logits):
    student, teacher, target = (t.double() if t.is_floating_point() else t for t in logits)
    keep = target.ne(PAD)
    objective = reference.kd_objective(
        student, target, 2.0, 0.9, 0.1, teacher_logits=teacher, ignore_index=PAD, reduce=False
    )
    cross_entropy, kl = float64_kd(student, teacher, 2.0)
    smoothed = F.cross_entropy(student, target, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(objective.loss, torch.where(keep, 0.9 * cross_entropy + 0.1 * smoothed, 0.0))
    torch.testing.assert_close(objective.kd_kl, torch.where(keep, kl, 0.0))


def test_reference_tail_is_the_kl_over_the_k_tokens_and_the_rest(logits):
    student, teacher, _ = (t.double() if t.is_floating_point() else t for t in logits)
    temperature, given = 2.0, teacher_given(teacher, 3, tail=True)
    terms = reference.distillation_terms(student, temperature, **given)
    expected = []
    for s_row, tokens, log_q in zip(
        student.tolist(), given["teacher_topk_indices"].tolist(), given["teacher_topk_log_probs"].tolist()
    ):
        s_exp = [math.exp(v / temperature) for v in s_row]
        p = [s_exp[v] / sum(s_exp) for v in tokens]
        outcomes = p + [1 - sum(p)]
        expected.append(temperature**2 * sum(math.exp(lq) * (lq - math.log(po)) for lq, po in zip(log_q, outcomes)))
    torch.testing.assert_close(terms.kl, torch.tensor(expected, dtype=torch.float64))


# The fused loss against the specification.


def values_and_gradient(function, student, dtype, **arguments):
    """``function``'s per-row outputs at ``dtype`` and the student's gradient of a weighted sum of all of
    them, so that every output's backward counts."""
    student = student.to(dtype).requires_grad_()
    cast = {key: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v for key, v in arguments.items()}
    result = function(student, **cast)
    outputs = [getattr(result, field.name) for field in dataclasses.fields(result)]
    (gradient,) = torch.autograd.grad(sum((i + 1) * value.sum() for i, value in enumerate(outputs)), student)
    return [value.detach().double() for value in outputs], gradient.double()


def assert_fused_equals_reference(fused, specification, student, dtype, **arguments):
    values, gradient = values_and_gradient(fused, student, dtype, **arguments)
    exact_values, exact_gradient = values_and_gradient(specification, student, torch.float64, **arguments)
    tolerance = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    for value, exact in zip(values, exact_values):
        torch.testing.assert_close(value, exact, **tolerance)
    torch.testing.assert_close(gradient, exact_gradient, **tolerance)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 3.0, 64.0])
def test_fused_kd_terms_match_the_reference(logits, temperature):
    student, teacher, _ = logits
    terms = distillation_terms(student, temperature, teacher_logits=teacher)
    exact = reference.distillation_terms(student.double(), temperature, teacher_logits=teacher.double())
    torch.testing.assert_close(terms.cross_entropy.double(), exact.cross_entropy, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.kl.double(), exact.kl, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("convention", ["uniform", "fairseq"])
@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_fused_objective_and_gradient_equal_the_reference(logits, dtype, convention, topk, temperature):
    student, teacher, target = logits
    arguments = dict(target=target, temperature=temperature, kd_weight=0.7, smoothing=0.2, ignore_index=PAD)
    arguments.update(convention=convention, reduce=False, **teacher_given(teacher, topk))
    assert_fused_equals_reference(kd_objective, reference.kd_objective, student, dtype, **arguments)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_fused_kd_terms_and_gradient_equal_the_reference_without_a_target(logits, dtype, topk, temperature):
    student, teacher, target = logits
    arguments = dict(temperature=temperature, mask=target.ne(PAD), **teacher_given(teacher, topk))
    assert_fused_equals_reference(distillation_terms, reference.distillation_terms, student, dtype, **arguments)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_fused_topk_with_given_teacher_log_probs_equals_the_reference(logits, dtype, tail, temperature):
    """The teacher's log-probabilities at its own temperature (1.5), over its k tokens or with its tail."""
    student, teacher, target = logits
    arguments = dict(target=target, temperature=temperature, kd_weight=0.8, smoothing=0.1, ignore_index=PAD)
    arguments.update(reduce=False, **teacher_given(teacher, 3, tail=tail, teacher_temperature=1.5))
    assert_fused_equals_reference(kd_objective, reference.kd_objective, student, dtype, **arguments)


def test_fused_objective_sums_what_the_reference_sums(logits):
    student, teacher, target = logits
    mixed = kd_objective(student, target, 2.0, 0.9, 0.1, teacher_logits=teacher, ignore_index=PAD)
    exact = reference.kd_objective(
        student.double(), target, 2.0, 0.9, 0.1, teacher_logits=teacher.double(), ignore_index=PAD
    )
    torch.testing.assert_close(mixed.loss.double(), exact.loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed.nll.double(), exact.nll, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed.kd_kl.double(), exact.kd_kl, rtol=1e-3, atol=1e-4)


def test_kl_is_zero_when_student_equals_teacher(logits):
    _, teacher, _ = logits
    for temperature in (1.0, 3.0, 64.0):
        terms = distillation_terms(teacher.clone(), temperature, teacher_logits=teacher)
        assert terms.kl.abs().max() < 1e-3
        assert (terms.cross_entropy > 0.5).all()  # the CE keeps the teacher's entropy


def test_topk_with_k_equal_vocab_is_the_full_vocabulary(logits):
    student, teacher, _ = logits
    indices, values = topk_teacher(teacher, teacher.size(-1))
    sparse = distillation_terms(student, 2.0, teacher_topk_indices=indices, teacher_topk_logits=values)
    full = distillation_terms(student, 2.0, teacher_logits=teacher)
    torch.testing.assert_close(sparse.cross_entropy, full.cross_entropy)
    torch.testing.assert_close(sparse.kl, full.kl)


def test_uniform_smoothing_matches_torch_cross_entropy(logits):
    student, _, target = logits
    keep = target.ne(PAD)
    loss, nll = label_smoothed_nll(F.log_softmax(student, -1), target, 0.1, ignore_index=PAD)
    expected = F.cross_entropy(student[keep], target[keep], label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss.sum(), expected)
    torch.testing.assert_close(nll.sum(), F.cross_entropy(student[keep], target[keep], reduction="sum"))
    assert (loss[~keep] == 0).all()


def test_fairseq_convention_is_uniform_with_rescaled_epsilon(logits):
    student, _, target = logits
    lprobs = F.log_softmax(student, -1)
    vocab = student.size(-1)
    uniform, _ = label_smoothed_nll(lprobs, target, 0.1, PAD, "uniform")
    fairseq, _ = label_smoothed_nll(lprobs, target, fairseq_epsilon(0.1, vocab), PAD, "fairseq")
    torch.testing.assert_close(uniform, fairseq)


def test_pure_kd_is_the_vision_papers_batchmean_kl(logits):
    student, teacher, target = logits
    objective = kd_objective(student, target, 4.0, 1.0, 0.0, teacher_logits=teacher)
    official = F.kl_div(F.log_softmax(student / 4.0, 1), F.softmax(teacher / 4.0, 1), reduction="batchmean") * 16
    torch.testing.assert_close(objective.kd_kl / student.size(0), official, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_finite_fp32_gradients_at_t64(logits, dtype):
    student, teacher, target = logits
    student = (student * 10).to(dtype).requires_grad_()
    objective = kd_objective(student, target, 64.0, 0.9, 0.1, teacher_logits=(teacher * 10).to(dtype), ignore_index=PAD)
    objective.loss.backward()
    assert objective.loss.dtype == torch.float32
    assert torch.isfinite(objective.loss) and torch.isfinite(student.grad).all()
    assert (student.grad[target.eq(PAD)] == 0).all()


def test_minus_infinity_logits_are_tokens_of_probability_zero(logits):
    student, teacher, target = logits
    student, teacher = student.clone(), teacher.clone()
    teacher[:, 3] = student[:, 3] = float("-inf")
    arguments = dict(target=target.clamp(min=4), temperature=64.0, kd_weight=0.9, smoothing=0.0, teacher_logits=teacher)
    assert_fused_equals_reference(kd_objective, reference.kd_objective, student, torch.float32, **arguments)
    _, gradient = values_and_gradient(kd_objective, student, torch.float32, **arguments)
    assert torch.isfinite(gradient).all() and (gradient[:, 3] == 0).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"temperature": -1.0}, "got -1.0"),
        ({"kd_weight": 1.5}, "KD weight must be in [0, 1], got 1.5"),
        ({"smoothing": 1.0}, "label smoothing must be in [0, 1), got 1.0"),
        ({"kernel": "fast"}, "KD kernel must be one of ('auto', 'eager', 'cpu'), got 'fast'"),
    ],
)
def test_bad_settings_name_the_value(logits, kwargs, message):
    student, teacher, target = logits
    settings = {"temperature": 1.0, "kd_weight": 0.5, "smoothing": 0.1, **kwargs}
    with pytest.raises(InvalidConfig) as error:
        kd_objective(student, target, teacher_logits=teacher, **settings)
    assert message in str(error.value)


def test_fused_terms_pass_gradcheck(logits):
    student, teacher, target = (t.double() if t.is_floating_point() else t for t in logits)

    def all_terms(s):
        terms = distillation_terms(s, 2.0, teacher_logits=teacher, mask=target.ne(PAD))
        mixed = kd_objective(s, target, 2.0, 0.5, 0.1, teacher_logits=teacher, ignore_index=PAD)
        return terms.cross_entropy, terms.kl, mixed.loss, mixed.nll

    assert torch.autograd.gradcheck(all_terms, (student.requires_grad_(),))


def test_chunked_and_whole_batch_agree(logits, monkeypatch):
    import lskd.losses

    student, teacher, target = logits
    student = student.requires_grad_()
    whole = kd_objective(student, target, 2.0, 0.9, 0.1, teacher_logits=teacher, ignore_index=PAD)
    (whole_grad,) = torch.autograd.grad(whole.loss, student)
    monkeypatch.setattr(lskd.losses, "CPU_CHUNK_ELEMENTS", student.size(-1) * 2)  # two rows per chunk
    chunked = kd_objective(student, target, 2.0, 0.9, 0.1, teacher_logits=teacher, ignore_index=PAD)
    (chunked_grad,) = torch.autograd.grad(chunked.loss, student)
    torch.testing.assert_close(chunked.loss, whole.loss)
    torch.testing.assert_close(chunked_grad, whole_grad)


@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_second_backward_gives_the_same_gradient(logits, topk, temperature):
    """The backward turns the forward's buffers into the gradient; a retained graph recomputes them."""
    student, teacher, target = logits
    student = student.requires_grad_()
    kwargs = (
        {"teacher_logits": teacher}
        if topk is None
        else dict(zip(("teacher_topk_indices", "teacher_topk_logits"), topk_teacher(teacher, topk)))
    )
    loss = kd_objective(student, target, temperature, 0.9, 0.1, ignore_index=PAD, **kwargs).loss
    (first,) = torch.autograd.grad(loss, student, retain_graph=True)
    (second,) = torch.autograd.grad(loss, student)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
