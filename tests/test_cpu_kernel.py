"""The compiled row kernel (lskd/kernels/kd_rows.cpp) gives the eager loss's values and gradients at
every vocabulary size its vector loops split differently (tails, one and many float32 blocks), and the
choice of passes fails or falls back as it says."""

import logging

import pytest
import torch

import lskd.losses
from fixtures.loss_paths import require_row_kernel
from lskd import cpu_kernel
from lskd.errors import InvalidConfig
from lskd.losses import distillation_terms, kd_objective, topk_teacher

PAD = 1


@pytest.fixture(scope="module", autouse=True)
def built_kernel():
    require_row_kernel()


def objective_and_gradient(student, target, teacher, temperature, topk, kernel, hard=True, smoothing=0.1):
    student = student.clone().requires_grad_()
    teacher_kwargs = (
        {"teacher_logits": teacher}
        if topk is None
        else dict(zip(("teacher_topk_indices", "teacher_topk_logits"), topk_teacher(teacher, topk)))
    )
    if hard:
        objective = kd_objective(
            student, target, temperature, 0.7, smoothing, ignore_index=PAD, kernel=kernel, **teacher_kwargs
        )
        values = torch.stack([objective.loss, objective.nll, objective.kd_kl])
        total = objective.loss
    else:
        terms = distillation_terms(student, temperature, kernel=kernel, **teacher_kwargs)
        values = torch.stack([terms.cross_entropy, terms.kl])
        total = terms.cross_entropy.sum() + terms.kl.sum()
    (gradient,) = torch.autograd.grad(total, student)
    return values, gradient


def assert_kernel_matches_eager(student, target, teacher, temperature, topk=None, hard=True, smoothing=0.1):
    eager = objective_and_gradient(student, target, teacher, temperature, topk, "eager", hard, smoothing)
    kernel = objective_and_gradient(student, target, teacher, temperature, topk, "cpu", hard, smoothing)
    torch.testing.assert_close(kernel[0], eager[0], rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(kernel[1], eager[1], rtol=1e-5, atol=1e-7)
    return kernel


@pytest.mark.parametrize("vocab", [1, 7, 16, 300, 1000])
@pytest.mark.parametrize("topk", [None, 3])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("hard", [True, False], ids=["with-target", "kd-only"])
def test_kernel_gives_the_eager_values_and_gradients(vocab, topk, temperature, hard):
    if topk is not None and topk > vocab:
        topk = vocab
    generator = torch.Generator().manual_seed(vocab)
    student = torch.randn(9, vocab, generator=generator) * 3
    teacher = torch.randn(9, vocab, generator=generator) * 3
    target = torch.randint(0, vocab, (9,), generator=generator)
    target[4] = PAD if vocab > PAD else target[4]
    assert_kernel_matches_eager(student, target, teacher, temperature, topk, hard)


def test_kernel_handles_masked_vocabulary_entries_as_the_eager_loss():
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(5, 40, generator=generator) * 3
    teacher = torch.randn(5, 40, generator=generator) * 3
    student[:, 20] = teacher[:, 20] = float("-inf")  # a token masked out of both models
    teacher[:, [5, 33]] = float("-inf")  # and two of the teacher's only
    target = torch.tensor([2, 5, 7, 9, 11])
    for temperature in (1.0, 2.0):
        values, gradient = assert_kernel_matches_eager(student, target, teacher, temperature, smoothing=0.0)
        assert torch.isfinite(values).all() and torch.isfinite(gradient).all()


def test_rows_split_over_threads_give_the_same_bits():
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(64, 600, generator=generator) * 3
    teacher = torch.randn(64, 600, generator=generator) * 3
    target = torch.randint(2, 600, (64,), generator=generator)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = objective_and_gradient(student, target, teacher, 2.0, None, "cpu")
        torch.set_num_threads(2)
        split = objective_and_gradient(student, target, teacher, 2.0, None, "cpu")
    finally:
        torch.set_num_threads(threads)
    for ours, reference in zip(split, single):
        torch.testing.assert_close(ours, reference, rtol=0, atol=0)


def test_required_kernel_refuses_inputs_it_does_not_take():
    student = torch.randn(4, 10, dtype=torch.float16)
    with pytest.raises(
        InvalidConfig,
        match=r"KD kernel 'cpu' needs contiguous float32 CPU logits, got student torch.float16 \(4, 10\) on cpu, "
        r"teacher torch.float16",
    ):
        distillation_terms(student, 2.0, teacher_logits=student, kernel="cpu")


def test_auto_uses_the_kernel_for_float32_and_eager_for_other_inputs(monkeypatch):
    calls = []
    original = lskd.losses._eager_passes
    monkeypatch.setattr(
        lskd.losses, "_eager_passes", lambda student, **rest: calls.append(student.dtype) or original(student, **rest)
    )
    student = torch.randn(4, 10)
    distillation_terms(student, 2.0, teacher_logits=student)
    distillation_terms(student.bfloat16(), 2.0, teacher_logits=student.bfloat16())
    assert calls == [torch.bfloat16]


def test_a_kernel_that_cannot_build_falls_back_under_auto_and_stops_a_required_one(monkeypatch, caplog):
    monkeypatch.setattr(cpu_kernel, "_build", lambda: (None, "CalledProcessError: no compiler"))
    cpu_kernel._warn_once.cache_clear()
    student = torch.randn(4, 10)
    with caplog.at_level(logging.WARNING, logger="lskd.cpu_kernel"):
        fallback = distillation_terms(student, 2.0, teacher_logits=student * 2)
        distillation_terms(student, 2.0, teacher_logits=student * 2)
    eager = distillation_terms(student, 2.0, teacher_logits=student * 2, kernel="eager")
    torch.testing.assert_close(fallback.cross_entropy, eager.cross_entropy, rtol=0, atol=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["fused KD loss kernel unavailable (CalledProcessError: no compiler); using the eager loss"]
    with pytest.raises(InvalidConfig, match=r"KD kernel 'cpu' could not be built \(CalledProcessError: no compiler\)"):
        distillation_terms(student, 2.0, teacher_logits=student, kernel="cpu")
