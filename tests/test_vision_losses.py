"""The vision objectives against the paper's official KD loss and torch's label smoothing (both independent of
the core), and the mixed objective against the core's specification (``lskd.reference``)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lskd.reference import kd_objective as specified_objective
from lskd_vision.engine import Precision, StudentObjective, TeacherObjective, train_step


def official_kd(student, teacher, temperature):
    """The paper's KL_div_Loss: F.kl_div(log_softmax(s/T), softmax(t/T), 'batchmean') · T²."""
    return (
        F.kl_div(
            F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1), reduction="batchmean"
        )
        * temperature**2
    )


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(16, 200, generator=generator) * 4, torch.randn(16, 200, generator=generator) * 4


@pytest.mark.parametrize("temperature", [1.0, 2.0, 3.0, 64.0])
def test_student_loss_value_and_gradient_match_official_kl(logits, temperature):
    student, teacher = logits
    ours_input = student.clone().requires_grad_(True)
    official_input = student.clone().requires_grad_(True)
    step = StudentObjective(temperature, kd_weight=1.0)(ours_input, torch.zeros(16, dtype=torch.long), teacher)
    official = official_kd(official_input, teacher, temperature)
    # At T = 64 the tempered distributions differ by ~1e-3 and float32 leaves ~4 digits of the KL.
    tolerance = 2e-4 if temperature > 10 else 1e-5
    torch.testing.assert_close(step.kd_kl, official, rtol=tolerance, atol=0)
    step.loss.backward()
    official.backward()
    torch.testing.assert_close(ours_input.grad, official_input.grad, rtol=1e-4, atol=1e-7)


def test_student_kd_weight_mixes_in_label_cross_entropy(logits):
    """w·T²·CE(teacher_T, student_T) + (1-w)·CE(labels), batch mean, without label smoothing."""
    student, teacher = logits
    target = torch.arange(16) % 200
    weight, temperature = 0.7, 3.0
    mixed = StudentObjective(temperature, kd_weight=weight)(student, target, teacher).loss
    expected = specified_objective(student, target, temperature, weight, 0.0, teacher_logits=teacher).loss / 16
    torch.testing.assert_close(mixed, expected)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3])
def test_teacher_loss_is_torch_label_smoothing(logits, alpha):
    student, _ = logits
    target = torch.arange(16) * 7 % 200
    ours = TeacherObjective(alpha)(student, target, None).loss
    torch.testing.assert_close(ours, F.cross_entropy(student, target, label_smoothing=alpha))


def test_train_step_applies_the_official_kd_gradient():
    """One SGD step of the trainer's ``train_step`` equals a step on the official loss."""
    torch.manual_seed(0)
    student, teacher = nn.Linear(12, 5), nn.Linear(12, 5)
    reference = nn.Linear(12, 5)
    reference.load_state_dict(student.state_dict())
    images, target = torch.randn(8, 12), torch.randint(0, 5, (8,))
    precision = Precision(torch.device("cpu"), enabled=False, channels_last=False)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    train_step(student, teacher, StudentObjective(2.0, 1.0), optimizer, None, precision, images, target)

    with torch.no_grad():
        teacher_logits = teacher(images)
    official_kd(reference(images), teacher_logits, 2.0).backward()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter -= 0.5 * parameter.grad
    for ours, expected in zip(student.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in teacher.parameters())
