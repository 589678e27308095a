"""The core's KL term is as precise as the official float32 formula at high temperature: both are
checked against a float64 computation."""
import torch
import torch.nn.functional as F

from lskd.losses import distillation_terms


def official_rows(student, teacher, temperature):
    return F.kl_div(
        F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1), reduction="none"
    ).sum(1) * temperature**2


def test_kl_at_temperature_64_is_as_accurate_as_the_official_formula():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(64, 200, generator=generator) * 4
    teacher = torch.randn(64, 200, generator=generator) * 4
    temperature = 64.0
    exact = official_rows(student.double(), teacher.double(), temperature)
    official_error = (official_rows(student, teacher, temperature).double() - exact).abs().max()
    ours = distillation_terms(student, temperature, teacher_logits=teacher).kl.double()
    assert (ours - exact).abs().max() <= 2 * official_error
    torch.testing.assert_close(ours, exact, rtol=3e-4, atol=0)
