"""Bad settings end in one line naming the value and what was expected, exit non-zero, and leave
--out untouched."""

import contextlib
import io
import shutil
import subprocess
from contextlib import contextmanager

import pytest
import torch

from lskd.errors import InvalidConfig
from lskd_tools.files import check_writable
from lskd_vision.cli import main
from lskd_vision.config import build_config
from lskd_vision.models import build_model
from lskd_vision.run_folder import SETTINGS
from lskd_vision.trainer import plan_run
from lskd_vision_testdata import cli
from release_fixtures import write_cub_metadata


def one_line_error(argv, *fragments):
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(stderr):
        main(argv)
    message = stderr.getvalue()
    assert exit_info.value.code == 2
    assert message.startswith("lskd-vision: error: ") and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message


def expect_one_line_error(argv, out, *fragments):
    one_line_error(argv, *fragments)
    assert not out.exists()


@pytest.fixture
def seven_class_teacher(tmp_path):
    path = tmp_path / "teacher7.pth"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 7).state_dict()}, path)
    return path


def test_teacher_with_other_class_count_from_the_command_line(tmp_path, seven_class_teacher):
    out = tmp_path / "run"
    result = cli(
        "train-student", "--dataset", "digits", "--teacher", str(seven_class_teacher), "-T", "2", "--out", str(out)
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "predicts 7 classes; expected 10" in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("temperature", ["0", "-1"])
def test_non_positive_temperature(tmp_path, temperature, seven_class_teacher):
    out = tmp_path / "run"
    argv = [
        "train-student",
        "--dataset",
        "digits",
        "--teacher",
        str(seven_class_teacher),
        f"-T={temperature}",
        "--out",
        str(out),
    ]
    expect_one_line_error(argv, out, "temperature must be > 0", temperature)


def test_missing_data_folder(tmp_path):
    out, data = tmp_path / "run", tmp_path / "no-such-imagenet"
    argv = ["train-teacher", "--dataset", "imagenet", "--data", str(data), "--out", str(out)]
    expect_one_line_error(argv, out, str(data), "train/")


def test_cub_folder_missing_a_metadata_file(tmp_path):
    cub = tmp_path / "CUB_200_2011"
    write_cub_metadata(cub, classes=3, images_per_class=2)
    (cub / "image_class_labels.txt").unlink()
    (cub / "images").mkdir()
    out = tmp_path / "run"
    argv = ["train-teacher", "--dataset", "cub", "--data", str(cub), "--out", str(out)]
    expect_one_line_error(argv, out, "image_class_labels.txt")


def test_bad_alpha_and_unknown_arch(tmp_path):
    out = tmp_path / "run"
    expect_one_line_error(["train-teacher", "--dataset", "digits", "--alpha", "1.5", "--out", str(out)], out, "1.5")
    expect_one_line_error(
        ["train-teacher", "--dataset", "digits", "--arch", "resnet1000", "--out", str(out)],
        out,
        "resnet1000",
        "resnet18",
    )


def test_missing_teacher_checkpoint(tmp_path):
    out, teacher = tmp_path / "run", tmp_path / "absent.pth"
    argv = ["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", "1", "--out", str(out)]
    expect_one_line_error(argv, out, str(teacher), "does not exist")


def snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_out_holding_files_the_run_did_not_write_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "metrics.csv").write_text("my,own\n1,2\n")
    before = snapshot(out)
    for extra in ([], ["--resume"]):
        one_line_error(
            ["train-teacher", "--dataset", "digits", "--epochs", "1", "--out", str(out), *extra],
            f"--out {out} holds files this run did not write (metrics.csv)",
        )
    assert snapshot(out) == before


@pytest.mark.parametrize("contents", [{}, {"run.json": "{}"}, {SETTINGS: "{}", "metrics.csv": "epoch\n"}])
def test_new_folder_a_recipe_manifest_and_a_claimed_run_are_accepted(tmp_path, contents):
    """Checked without training: planning writes nothing, so the folder is as it was."""
    out = tmp_path / "run"
    out.mkdir()
    for name, text in contents.items():
        (out / name).write_text(text)
    plan_run(build_config("teacher", "digits", None, {"out": out, "epochs": 1, "device": "cpu"}))
    assert {path.name: path.read_text() for path in out.iterdir()} == contents


def can_write(folder) -> bool:
    try:
        check_writable(folder, "probe")
    except InvalidConfig:
        return False
    return True


@contextmanager
def read_only(folder):
    """``folder`` made unwritable; as root, where permissions do not stop writes, the immutable attribute."""
    folder.chmod(0o555)
    immutable = False
    try:
        if can_write(folder) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", folder], capture_output=True, check=False).returncode == 0
        if can_write(folder):
            pytest.skip("this user can write into read-only folders and cannot make one immutable")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", folder], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("nested", [False, True])
def test_unwritable_out_is_refused_before_any_work(tmp_path, nested):
    folder = tmp_path / "locked"
    folder.mkdir()
    out = folder / "run" if nested else folder
    with read_only(folder):
        one_line_error(
            ["train-teacher", "--dataset", "digits", "--epochs", "1", "--out", str(out)], f"--out {out} is not writable"
        )
        assert not any(folder.iterdir())
