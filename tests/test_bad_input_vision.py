"""lskd-vision refuses a temperature whose KD arithmetic cannot stay finite, before writing --out."""

import pytest
import torch

from lskd_vision.cli import main
from lskd_vision.models import build_model


@pytest.mark.parametrize(
    "temperature, message",
    [("inf", "finite number, got inf"), ("nan", "finite number, got nan"), ("1e20", "must be <= 1e+12")],
)
def test_unbounded_temperature_is_refused(tmp_path, capsys, temperature, message):
    teacher, out = tmp_path / "teacher.pth", tmp_path / "run"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, teacher)
    with pytest.raises(SystemExit) as exit_info:
        main(["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", temperature, "--out", str(out)])
    text = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert text.startswith("lskd-vision: error: ") and text.count("\n") == 1 and message in text
    assert not out.exists()
