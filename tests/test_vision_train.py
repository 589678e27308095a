"""Training behaviour on the embedded digits: two gloo processes equal one process with the same
global batch, and an interrupted run resumes to exactly the uninterrupted result."""
import csv
import json
import sys

import pytest
import torch

from lskd_vision.cli import main
from lskd_vision.models import build_model
from lskd_vision_testdata import cli, run


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pth"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, path)
    return path


def step_losses(run_dir):
    with (run_dir / "steps.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def test_two_gloo_processes_equal_one_process(tmp_path, teacher):
    common = ["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", "3", "--epochs", "1", "--device", "cpu"]
    single = cli(*common, "--batch-size", "64", "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    double = run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lskd_vision.cli",
         *common, "--batch-size", "32", "--out", str(tmp_path / "two")],
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


def test_stop_and_resume_continues_identically(tmp_path, teacher):
    common = ["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", "2", "--epochs", "3",
              "--lr-step", "2", "--device", "cpu"]
    main([*common, "--out", str(tmp_path / "straight")])
    main([*common, "--out", str(tmp_path / "resumed"), "--stop-after", "1"])
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    assert torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=True)["epoch"] == 1
    main([*common, "--out", str(tmp_path / "resumed"), "--resume"])

    straight = torch.load(tmp_path / "straight" / "checkpoint.pth", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=True)
    for key, value in straight["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert without_timing(resumed["history"]) == without_timing(straight["history"])
    assert step_losses(tmp_path / "resumed") == step_losses(tmp_path / "straight")
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert (a["final"], a["best"], a["teacher"]) == (b["final"], b["best"], b["teacher"])


def test_existing_run_needs_resume(tmp_path, teacher):
    out = tmp_path / "run"
    args = ["train-teacher", "--dataset", "digits", "--epochs", "2", "--device", "cpu", "--out", str(out)]
    main([*args, "--stop-after", "1"])
    with pytest.raises(SystemExit, match="pass --resume"):
        main(args)
