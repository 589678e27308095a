"""Bad settings end in one line naming the value and what was expected, exit non-zero, and leave
--out untouched."""
import contextlib
import io
import os

import pytest
import torch

from lskd_vision.cli import main
from lskd_vision.models import build_model
from lskd_vision_testdata import CUB_META, cli


def expect_one_line_error(argv, out, *fragments):
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(stderr):
        main(argv)
    message = stderr.getvalue()
    assert exit_info.value.code == 2
    assert message.startswith("lskd-vision: error: ") and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message
    assert not out.exists()


@pytest.fixture
def seven_class_teacher(tmp_path):
    path = tmp_path / "teacher7.pth"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 7).state_dict()}, path)
    return path


def test_teacher_with_other_class_count_from_the_command_line(tmp_path, seven_class_teacher):
    out = tmp_path / "run"
    result = cli("train-student", "--dataset", "digits", "--teacher", str(seven_class_teacher), "-T", "2",
                 "--out", str(out))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "predicts 7 classes; expected 10" in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("temperature", ["0", "-1"])
def test_non_positive_temperature(tmp_path, temperature, seven_class_teacher):
    out = tmp_path / "run"
    argv = ["train-student", "--dataset", "digits", "--teacher", str(seven_class_teacher), f"-T={temperature}",
            "--out", str(out)]
    expect_one_line_error(argv, out, "temperature must be > 0", temperature)


def test_missing_data_folder(tmp_path):
    out, data = tmp_path / "run", tmp_path / "no-such-imagenet"
    argv = ["train-teacher", "--dataset", "imagenet", "--data", str(data), "--out", str(out)]
    expect_one_line_error(argv, out, str(data), "train/")


def test_cub_folder_missing_a_metadata_file(tmp_path):
    cub = tmp_path / "CUB_200_2011"
    (cub / "images").mkdir(parents=True)
    for name in ("images.txt", "train_test_split.txt"):
        os.symlink(CUB_META / name, cub / name)
    out = tmp_path / "run"
    argv = ["train-teacher", "--dataset", "cub", "--data", str(cub), "--out", str(out)]
    expect_one_line_error(argv, out, "image_class_labels.txt")


def test_bad_alpha_and_unknown_arch(tmp_path):
    out = tmp_path / "run"
    expect_one_line_error(["train-teacher", "--dataset", "digits", "--alpha", "1.5", "--out", str(out)], out, "1.5")
    expect_one_line_error(
        ["train-teacher", "--dataset", "digits", "--arch", "resnet1000", "--out", str(out)], out,
        "resnet1000", "resnet18"
    )


def test_missing_teacher_checkpoint(tmp_path):
    out, teacher = tmp_path / "run", tmp_path / "absent.pth"
    argv = ["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", "1", "--out", str(out)]
    expect_one_line_error(argv, out, str(teacher), "does not exist")
