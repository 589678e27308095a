"""Bad settings and bad checkpoint files, refused by the shared checks before anything runs."""

import math
import os
from fractions import Fraction

import pytest
import torch

from bad_input_helpers import TORCH_UNSAFE_ADVICE
from lskd.checks import MAX_TEMPERATURE, check_temperature, check_topk
from lskd.errors import DataError, InvalidConfig
from lskd.losses import kd_objective
from lskd_tools.checkpoints import load_checkpoint


@pytest.mark.parametrize(
    "temperature, message",
    [
        (math.inf, "finite number, got inf"),
        (-math.inf, "finite number, got -inf"),
        (math.nan, "finite number, got nan"),
        (0.0, "must be > 0, got 0.0"),
        (1e20, "must be <= 1e+12"),
        (MAX_TEMPERATURE * 1.01, "got 1.01e+12"),
    ],
)
def test_temperature_outside_the_finite_range_is_refused(temperature, message):
    with pytest.raises(InvalidConfig, match=message.replace("+", r"\+")):
        check_temperature(temperature)


def test_largest_accepted_temperature_keeps_loss_and_gradient_finite():
    """At T = MAX_TEMPERATURE the T²-scaled KD term of a batch stays inside float32; just above the bound
    T² alone would not (T = 2e19 gives T² > 3.4e38)."""
    generator = torch.Generator().manual_seed(0)
    student = (5 * torch.randn(4096, 2000, generator=generator)).requires_grad_()
    teacher = 5 * torch.randn(4096, 2000, generator=generator)
    target = torch.randint(0, 2000, (4096,), generator=generator)
    objective = kd_objective(student, target, MAX_TEMPERATURE, 0.9, 0.1, teacher_logits=teacher)
    objective.loss.backward()
    assert torch.isfinite(objective.loss) and torch.isfinite(student.grad).all()
    assert not math.isfinite(torch.tensor(2e19, dtype=torch.float32).pow(2).item())


def test_topk_outside_the_vocabulary_names_the_flag_and_size():
    with pytest.raises(InvalidConfig, match=r"--kd-topk must be in \[1, 192\] \(the target vocabulary has 192"):
        check_topk(500, 192, "--kd-topk")
    check_topk(192, 192, "--kd-topk")


@pytest.fixture
def bad_files(tmp_path):
    torch.save({"w": torch.zeros(3), "hook": os.getcwd}, tmp_path / "unsafe.pt")
    torch.save({"w": torch.zeros(1000)}, tmp_path / "good.pt")
    whole = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "checkpoint_best.pt").write_bytes(whole)
    return tmp_path


@pytest.mark.parametrize(
    "name, message",
    [
        ("unsafe.pt", "was refused as unsafe: it pickles posix.getcwd"),
        ("truncated.pt", "could not be read: truncated or not a PyTorch checkpoint"),
        ("folder", "is a directory; expected a checkpoint file (it holds checkpoint_best.pt)"),
        ("absent.pt", "does not exist"),
    ],
)
def test_bad_checkpoint_file_is_one_data_error(bad_files, name, message):
    with pytest.raises(DataError) as refused:
        load_checkpoint(bad_files / name)
    assert message in str(refused.value) and str(bad_files / name) in str(refused.value)
    assert TORCH_UNSAFE_ADVICE not in str(refused.value) and "\n" not in str(refused.value)


def test_good_checkpoint_loads_its_tensors(bad_files):
    assert torch.equal(load_checkpoint(bad_files / "good.pt")["w"], torch.zeros(1000))


def test_loading_keeps_process_wide_allow_list(tmp_path):
    """fairseq's own loads rely on the allow-list staying in place after lskd has read a checkpoint."""
    torch.save({"ratio": Fraction(1, 3)}, tmp_path / "fraction.pt")
    with torch.serialization.safe_globals([Fraction]):  # stands for the plugin's process-wide allow-list
        assert load_checkpoint(tmp_path / "fraction.pt", [Fraction])["ratio"] == Fraction(1, 3)
        assert torch.load(tmp_path / "fraction.pt", weights_only=True)["ratio"] == Fraction(1, 3)
