"""Training behaviour on the embedded digits: two gloo processes equal one process with the same
global batch, and an interrupted run resumes to exactly the uninterrupted result."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from lskd_vision.cli import main
from lskd_vision.models import build_model
from lskd_vision_testdata import cli, run
from repo_root import REPO


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, path)
    return path


def step_losses(run_dir):
    with (run_dir / "steps.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path, teacher):
    common = [
        "train-student",
        "--dataset",
        "digits",
        "--teacher",
        str(teacher),
        "-T",
        "3",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    single = cli(*common, "--batch-size", "64", "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    double = run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "lskd_vision.cli",
            *common,
            "--batch-size",
            "32",
            "--out",
            str(tmp_path / "two"),
        ],
        env={"OMP_NUM_THREADS": "1"},
    )
    assert double.returncode == 0, double.stderr
    one, two = step_losses(tmp_path / "one"), step_losses(tmp_path / "two")
    assert len(one) == len(two) > 10
    for expected, got in zip(one, two):
        assert got == pytest.approx(expected, abs=1e-4)
    summary_one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    summary_two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert summary_two["world_size"] == 2 and summary_two["global_batch_size"] == 64
    assert summary_two["final"]["top1"] == pytest.approx(summary_one["final"]["top1"], abs=0.3)  # ≤ one image


def without_timing(history):
    return [{key: value for key, value in record.items() if key != "seconds"} for record in history]


def resume_args(teacher):
    return [
        "train-student",
        "--dataset",
        "digits",
        "--teacher",
        str(teacher),
        "-T",
        "2",
        "--epochs",
        "4",
        "--lr-step",
        "2",
        "--device",
        "cpu",
    ]


@pytest.fixture(scope="module")
def straight(teacher, tmp_path_factory):
    """The uninterrupted reference run the interrupted ones must reproduce exactly."""
    out = tmp_path_factory.mktemp("straight") / "run"
    main([*resume_args(teacher), "--out", str(out)])
    return out


def assert_same_run(run_dir, reference_dir):
    ours = torch.load(run_dir / "checkpoint.pth", weights_only=True)
    reference = torch.load(reference_dir / "checkpoint.pth", weights_only=True)
    for key, value in reference["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key
    assert without_timing(ours["history"]) == without_timing(reference["history"])
    a = json.loads((run_dir / "metrics.json").read_text())
    b = json.loads((reference_dir / "metrics.json").read_text())
    assert (a["final"], a["best"], a["teacher"]) == (b["final"], b["best"], b["teacher"])


def test_stop_and_resume_continues_identically(tmp_path, teacher, straight):
    out = tmp_path / "resumed"
    main([*resume_args(teacher), "--out", str(out), "--stop-after", "1"])
    assert not (out / "metrics.json").exists()
    assert torch.load(out / "checkpoint.pth", weights_only=True)["epoch"] == 1
    main([*resume_args(teacher), "--out", str(out), "--resume"])
    assert_same_run(out, straight)
    assert step_losses(out) == step_losses(straight)


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, teacher, straight):
    out = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "lskd_vision.cli", *resume_args(teacher), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pth").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    main([*resume_args(teacher), "--out", str(out), "--resume"])
    assert_same_run(out, straight)


def test_existing_run_needs_resume(tmp_path, teacher, capsys):
    out = tmp_path / "run"
    args = ["train-teacher", "--dataset", "digits", "--epochs", "2", "--device", "cpu", "--out", str(out)]
    main([*args, "--stop-after", "1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and "pass --resume" in capsys.readouterr().err


def test_rows_of_an_epoch_without_checkpoint_are_dropped_on_resume(tmp_path, teacher, straight):
    """A kill after an epoch's CSV rows but before its checkpoint must not leave duplicate rows."""
    out = tmp_path / "run"
    main([*resume_args(teacher), "--out", str(out), "--stop-after", "1"])
    for name in ("metrics.csv", "steps.csv"):
        with (out / name).open("a") as handle:
            handle.write("2,999,999\n")
    main([*resume_args(teacher), "--out", str(out), "--resume"])
    assert step_losses(out) == step_losses(straight)
    assert (out / "metrics.csv").read_text().count("\n2,") == 1
