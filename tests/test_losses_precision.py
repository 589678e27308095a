"""The core's KD values are exact to float32: checked against its specification (``lskd.reference``, itself
checked against float64 formulas written out in test_losses) evaluated in float64, for the vocabulary sizes
of real translation models, temperatures from 0.5 to 64 and float32 / float16 / bfloat16 logits."""

import pytest
import torch
import torch.nn.functional as F

from lskd import reference
from lskd.losses import distillation_terms, kd_objective, topk_teacher

TEMPERATURES = (0.5, 0.6, 1.0, 2.0, 8.0, 64.0)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
RELATIVE = 5e-6
PAD = 1
# Each test runs with the eager loss passes and with the compiled row kernel (fixtures.loss_paths.loss_passes).
pytestmark = pytest.mark.usefixtures("loss_passes")


def kd_reference(student, teacher, temperature, **topk):
    """T²·Σ q·(-log p) and T²·Σ q·log(q/p) of Tan et al., in float64."""
    teacher = {"teacher_logits": teacher.double()} if not topk else topk
    terms = reference.distillation_terms(student.double(), temperature, **teacher)
    return terms.cross_entropy, terms.kl


def relative_error(value, exact):
    return ((value.double() - exact) / exact).abs().max().item()


def logits(vocab, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(8, vocab, generator=generator) * 4
    teacher = torch.randn(8, vocab, generator=generator) * 4
    return student.to(dtype), teacher.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("vocab", [8000, 32000])
def test_kd_values_are_exact_to_float32(vocab, dtype):
    student, teacher = logits(vocab, dtype, vocab)
    for temperature in TEMPERATURES:
        terms = distillation_terms(student, temperature, teacher_logits=teacher)
        cross_entropy, kl = kd_reference(student, teacher, temperature)
        assert relative_error(terms.cross_entropy, cross_entropy) <= RELATIVE, temperature
        # At T = 64 the KL of two near-uniform distributions is ~1e-3 of either log-sum-exp, whose float32
        # rounding then dominates; below that it is as exact as the cross-entropy.
        assert relative_error(terms.kl, kl) <= (RELATIVE if temperature <= 8 else 1e-4), temperature


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_objective_and_topk_values_are_exact_to_float32(dtype):
    student, teacher = logits(32000, dtype, 5)
    target = torch.tensor([3, 4, PAD, 10, 11, 12, 13, 14])
    indices, values = topk_teacher(teacher, 4)
    for temperature in TEMPERATURES:
        objective = kd_objective(student, target, temperature, 0.7, 0.1, teacher_logits=teacher, ignore_index=PAD)
        exact = reference.kd_objective(
            student.double(), target, temperature, 0.7, 0.1, teacher_logits=teacher.double(), ignore_index=PAD
        )
        assert relative_error(objective.loss, exact.loss) <= RELATIVE, temperature
        sparse = distillation_terms(student, temperature, teacher_topk_indices=indices, teacher_topk_logits=values)
        topk_exact, _ = kd_reference(
            student, teacher, temperature, teacher_topk_indices=indices, teacher_topk_logits=values.double()
        )
        assert relative_error(sparse.cross_entropy, topk_exact) <= RELATIVE, temperature


def official_rows(student, teacher, temperature):
    return (
        F.kl_div(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="none").sum(1)
        * temperature**2
    )


def test_kl_at_temperature_64_is_more_accurate_than_the_official_formula():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(64, 200, generator=generator) * 4
    teacher = torch.randn(64, 200, generator=generator) * 4
    temperature = 64.0
    exact = official_rows(student.double(), teacher.double(), temperature)
    official_error = (official_rows(student, teacher, temperature).double() - exact).abs().max()
    ours = distillation_terms(student, temperature, teacher_logits=teacher).kl.double()
    assert (ours - exact).abs().max() <= official_error
    torch.testing.assert_close(ours, exact, rtol=1e-4, atol=0)
