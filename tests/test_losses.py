"""The KD-loss core against hand-written float64 formulas and torch's own label smoothing."""

import math

import pytest
import torch
import torch.nn.functional as F

from lskd.errors import InvalidConfig
from lskd.losses import distillation_terms, fairseq_epsilon, kd_objective, label_smoothed_nll, topk_teacher

PAD = 1
# Each test runs with the eager loss passes and with the compiled row kernel (conftest.loss_passes).
pytestmark = pytest.mark.usefixtures("loss_passes")


def reference_kd(student, teacher, temperature):
    """T² · Σ q log(1/p) and T² · Σ q log(q/p), float64, written out term by term."""
    student, teacher = student.double(), teacher.double()
    ce, kl = [], []
    for s_row, t_row in zip(student, teacher):
        s_exp = [math.exp(v / temperature) for v in s_row.tolist()]
        t_exp = [math.exp(v / temperature) for v in t_row.tolist()]
        p = [v / sum(s_exp) for v in s_exp]
        q = [v / sum(t_exp) for v in t_exp]
        ce.append(temperature**2 * sum(-qi * math.log(pi) for qi, pi in zip(q, p)))
        kl.append(temperature**2 * sum(qi * math.log(qi / pi) for qi, pi in zip(q, p) if qi > 0))
    return torch.tensor(ce, dtype=torch.float64), torch.tensor(kl, dtype=torch.float64)


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 11, generator=generator) * 3
    teacher = torch.randn(6, 11, generator=generator) * 3
    target = torch.tensor([2, 5, PAD, 7, 0, PAD])
    return student, teacher, target


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 3.0, 64.0])
def test_kd_term_matches_float64_formula(logits, temperature):
    student, teacher, _ = logits
    terms = distillation_terms(student, temperature, teacher_logits=teacher)
    ce, kl = reference_kd(student, teacher, temperature)
    torch.testing.assert_close(terms.cross_entropy.double(), ce, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(terms.kl.double(), kl, rtol=1e-3, atol=1e-4)


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


def test_topk_renormalises_over_the_k_entries(logits):
    student, teacher, _ = logits
    indices, values = topk_teacher(teacher, 4)
    terms = distillation_terms(student, 3.0, teacher_topk_indices=indices, teacher_topk_logits=values)
    q = torch.softmax(values.double() / 3.0, -1)
    log_p = torch.log_softmax(student.double() / 3.0, -1).gather(-1, indices)
    torch.testing.assert_close(terms.cross_entropy.double(), -9.0 * (q * log_p).sum(-1), rtol=1e-5, atol=1e-5)


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


def test_objective_mixes_kd_and_smoothed_nll(logits):
    student, teacher, target = logits
    keep = target.ne(PAD)
    mixed = kd_objective(student, target, 2.0, 0.9, 0.1, teacher_logits=teacher, ignore_index=PAD)
    ce, kl = reference_kd(student[keep], teacher[keep], 2.0)
    ls = F.cross_entropy(student[keep].double(), target[keep], label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(mixed.loss.double(), 0.9 * ce.sum() + 0.1 * ls, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixed.kd_kl.double(), kl.sum(), rtol=1e-3, atol=1e-4)


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


def test_minus_infinity_logits_stay_finite(logits):
    student, teacher, target = logits
    student, teacher = student.clone().requires_grad_(), teacher.clone()
    teacher[:, 3] = float("-inf")
    with torch.no_grad():
        student[:, 3] = float("-inf")
    objective = kd_objective(student, target.clamp(min=4), 64.0, 0.9, 0.0, teacher_logits=teacher)
    objective.loss.backward()
    assert torch.isfinite(objective.loss) and torch.isfinite(objective.kd_kl)
    assert torch.isfinite(student.grad).all()


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


def reference_objective(student, target, teacher, temperature, weight, smoothing, convention, pad, topk=None):
    """The objective through plain autograd ops, as a reference for the fused backward."""
    keep = target.ne(pad)
    vocab = student.size(-1)
    lprobs = torch.log_softmax(student, -1)
    gold = F.one_hot(target, vocab).to(lprobs.dtype)
    if convention == "uniform":  # (1-a)·onehot + a/V
        smoothed = (1 - smoothing) * gold + smoothing / vocab
    else:  # 1-a on the gold token, a/(V-1) on each of the others
        smoothed = torch.where(gold.bool(), 1 - smoothing, smoothing / (vocab - 1))
    hard = -(smoothed * lprobs).sum(-1)
    log_p_t = torch.log_softmax(student / temperature, -1)
    if topk is None:
        kd = -(torch.softmax(teacher / temperature, -1) * log_p_t).sum(-1)
    else:
        values, indices = teacher.topk(topk, -1)
        kd = -(torch.softmax(values / temperature, -1) * log_p_t.gather(-1, indices)).sum(-1)
    return (weight * temperature**2 * kd[keep]).sum() + ((1 - weight) * hard[keep]).sum()


@pytest.mark.parametrize("convention", ["uniform", "fairseq"])
@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_fused_gradient_equals_autograd_of_the_plain_formula(logits, convention, topk, temperature):
    student, teacher, target = (t.double() if t.is_floating_point() else t for t in logits)
    student = student.requires_grad_()
    kwargs = (
        {"teacher_logits": teacher}
        if topk is None
        else dict(zip(("teacher_topk_indices", "teacher_topk_logits"), topk_teacher(teacher, topk)))
    )
    fused = kd_objective(student, target, temperature, 0.7, 0.2, ignore_index=PAD, convention=convention, **kwargs)
    (fused_grad,) = torch.autograd.grad(fused.loss, student)
    reference = reference_objective(student, target, teacher, temperature, 0.7, 0.2, convention, PAD, topk)
    (reference_grad,) = torch.autograd.grad(reference, student)
    torch.testing.assert_close(fused.loss, reference)
    torch.testing.assert_close(fused_grad, reference_grad)


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
