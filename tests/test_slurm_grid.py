"""The grids under EXECUTOR=slurm on a real Slurm cluster (opt-in: LSKD_SLURM_CONF names its slurm.conf;
tests/slurm/local-cluster.sh start makes a one-node cluster here and prints it): the same cells as a local run,
the job graph, a failed student, scancel and resubmission, a double submission, and 2-task srun runs that match
single-process references."""

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from fixtures.fairseq_runs import STUDENT, TINY_TRANSFORMER, TRAINING, logged_updates
from repo_root import REPO

SLURM_CONF = os.environ.get("LSKD_SLURM_CONF", "")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SLURM_CONF,
        reason="no Slurm cluster: set LSKD_SLURM_CONF to its slurm.conf (tests/slurm/local-cluster.sh start, as "
        "root, makes one on this machine and prints the export)",
    ),
]
ENV = {**os.environ, "SLURM_CONF": SLURM_CONF, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
# Digits: two lanes, students at T 3. A teacher writes its resumable checkpoint after every epoch; twelve epochs
# (about half a second each on an idle core) leave the test seconds to cancel one after its first.
EPOCHS = 12
DIGITS = {"ALPHAS": "0.0 0.1", "TEMPERATURES": "3", "SEEDS": "1", "EPOCHS": str(EPOCHS), "DIFFUSION_TEMPERATURES": "3"}


def recipe(name, env, cwd):
    return subprocess.run(
        ["bash", str(REPO / "recipes" / f"{name}.sh")], capture_output=True, text=True, cwd=cwd, env={**ENV, **env}
    )


def submitted(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(re.findall(r"^submitted (\S+): job (\d+)", result.stdout, re.M))


def slurm(*args):
    return subprocess.run(list(args), capture_output=True, text=True, env=ENV, check=True).stdout


def queued(ids):
    if not ids:
        return set()
    listed = slurm("squeue", "--noheader", "--format=%i", f"--jobs={','.join(ids)}")
    return set(listed.split())


def wait_for_jobs(ids, seconds=600):
    deadline = time.monotonic() + seconds
    while queued(list(ids)):
        assert time.monotonic() < deadline, f"jobs {sorted(ids)} still queued after {seconds}s"
        time.sleep(1)


def job(job_id):
    """Slurm's record of a job (scontrol keeps it MinJobAge seconds after it ends; no accounting needed)."""
    fields = dict(re.findall(r"(\w+)=(\S*)", slurm("scontrol", "show", "job", "--oneliner", job_id)))
    return fields


def cells(run_dir):
    with (run_dir / "results.csv").open() as handle:
        return list(csv.reader(handle))


def scores(run_dir, names):
    """Every epoch's numbers of each run, less its duration."""
    histories = {name: json.loads((run_dir / name / "metrics.json").read_text())["history"] for name in names}
    return {name: [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in h] for name, h in histories.items()}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits grid run locally, then under Slurm: submitted twice at once, one teacher cancelled after its
    first epoch, the same command again, every job waited for."""
    top = tmp_path_factory.mktemp("digits")
    local = recipe("digits", {**DIGITS, "RUN_DIR": "local", "JOBS": "2"}, top)
    assert local.returncode == 0, local.stderr
    grid = {**DIGITS, "RUN_DIR": "slurm", "EXECUTOR": "slurm"}
    first = submitted(recipe("digits", grid, top))
    again = recipe("digits", grid, top)
    log = top / "slurm" / "logs" / "teacher-a0.1-s1.log"  # an epoch's line comes after its checkpoint is saved
    deadline = time.monotonic() + 300
    while f"epoch 1/{EPOCHS}" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the teacher never finished its first epoch"
        time.sleep(0.1)
    slurm("scancel", first["teacher-a0.1-s1"])
    lane = [first[name] for name in ("teacher-a0.1-s1", "student-a0.1-T3-word-s1")]
    wait_for_jobs(lane)
    resubmission = recipe("digits", grid, top)
    second = submitted(resubmission)
    wait_for_jobs({*first.values(), *second.values()})
    return top, first, again, resubmission, second


def test_digits_on_slurm_equals_the_local_grid_cell_for_cell(digits):
    top, *_ = digits
    assert cells(top / "slurm") == cells(top / "local")
    names = ["teacher-a0.0-s1", "teacher-a0.1-s1", "student-a0.0-T3-word-s1", "student-a0.1-T3-word-s1"]
    assert scores(top / "slurm", names) == scores(top / "local", names)  # every epoch's numbers, bit for bit


def test_no_student_starts_before_its_teacher_ends_and_results_come_last(digits):
    _, first, _, _, second = digits
    ids = {**first, **second}
    records = {name: job(ids[name]) for name in ids}
    for alpha in ("0.0", "0.1"):
        teacher, student = records[f"teacher-a{alpha}-s1"], records[f"student-a{alpha}-T3-word-s1"]
        assert student["StartTime"] >= teacher["EndTime"] and teacher["JobState"] == "COMPLETED"
    ends = [r["EndTime"] for name, r in records.items() if name != "results"]
    assert records["results"]["StartTime"] >= max(ends) and records["results"]["JobState"] == "COMPLETED"


def test_a_second_submission_while_queued_submits_nothing_twice(digits):
    _, first, again, _, _ = digits
    assert again.returncode == 0 and "submitted" not in again.stdout
    for name, job_id in first.items():  # a fast job may have ended by then: found finished, not submitted again
        queued_line = f"queued    {name}: job {job_id} (already in the queue)"
        assert queued_line in again.stdout or f"finished  {name}: " in again.stdout, again.stdout
    assert f"queued    results: job {first['results']} (already in the queue)" in again.stdout
    assert again.stdout.rstrip().endswith("nothing to submit: every stage is finished or queued")


def test_scancel_then_the_same_command_submits_only_the_missing_stages_and_the_teacher_resumes(digits):
    top, first, _, resubmission, second = digits
    assert set(second) == {"teacher-a0.1-s1", "student-a0.1-T3-word-s1", "diffusion-s1", "results"}
    for name in ("teacher-a0.0-s1", "student-a0.0-T3-word-s1"):  # the other lane: finished, or still queued
        assert re.search(rf"^(finished  {name}: |queued    {name}: job {first[name]} )", resubmission.stdout, re.M)
    log = (top / "slurm" / "logs" / "teacher-a0.1-s1.log").read_text()
    assert len(re.findall(r"^== \d{4}-\d\d-\d\d ", log, re.M)) == 2, log  # the cancelled job and the resumed one
    epochs = [log.count(f"epoch {epoch}/{EPOCHS} ") for epoch in range(1, EPOCHS + 1)]
    assert epochs[0] == 1 and epochs[-1] == 1 and max(epochs) == 1, log  # resumed after epoch 1, never restarted
    assert job(first["teacher-a0.1-s1"])["JobState"] == "CANCELLED"


def test_a_failed_student_leaves_the_other_cells_and_the_results_job_names_it(tmp_path):
    grid = {"ALPHAS": "0.1", "TEMPERATURES": "1 3", "EPOCHS": "1", "DIFFUSION_TEMPERATURES": "1"}
    grid.update(RUN_DIR="grid", EXECUTOR="slurm")
    (tmp_path / "grid" / "student-a0.1-T3-word-s1").mkdir(parents=True)
    (tmp_path / "grid" / "student-a0.1-T3-word-s1" / "checkpoint.pth").write_text(
        "not a checkpoint: it cannot resume\n"
    )
    ids = submitted(recipe("digits", grid, tmp_path))
    wait_for_jobs(ids.values())
    assert job(ids["student-a0.1-T3-word-s1"])["JobState"] == "FAILED"
    assert job(ids["student-a0.1-T1-word-s1"])["JobState"] == "COMPLETED"
    results = job(ids["results"])
    assert results["JobState"] == "FAILED"
    output = (tmp_path / "grid" / "logs" / f"results.slurm-{ids['results']}.out").read_text()
    assert "results: 1 runs failed or did not finish, their cells are empty: student-a0.1-T3-word-s1" in output, output
    header, *rows = cells(tmp_path / "grid")
    table = {(row[0], row[1]): dict(zip(header, row)) for row in rows}
    assert table[("Student", "3")]["α = 0.1"] == "" and table[("Student", "3")]["α = 0.1 missing"] == "1"
    for filled in (("Teacher", "-"), ("Student", "1")):
        assert re.fullmatch(r"[0-9]+\.[0-9]+", table[filled]["α = 0.1"]) and table[filled]["α = 0.1 missing"] == "0"


def test_toy_translation_on_slurm_equals_the_local_grid(tmp_path):
    grid = {"PROFILE": "tiny", "ALPHAS": "0.1", "TEMPERATURES": "2", "SEEDS": "1"}
    local = recipe("toy_translation", {**grid, "RUN_DIR": "local"}, tmp_path)
    assert local.returncode == 0, local.stderr
    ids = submitted(recipe("toy_translation", {**grid, "RUN_DIR": "slurm", "EXECUTOR": "slurm"}, tmp_path))
    assert set(ids) == {
        "data",
        "teacher-a0.1-s1",
        "eval-teacher-a0.1-s1",
        "cache-a0.1-s1",
        "student-a0.1-T2-word-s1",
        "eval-student-a0.1-T2-word-s1",
        "results",
    }
    wait_for_jobs(ids.values())
    records = {name: job(job_id) for name, job_id in ids.items()}
    assert all(record["JobState"] == "COMPLETED" for record in records.values())
    order = ["data", "teacher-a0.1-s1", "cache-a0.1-s1", "student-a0.1-T2-word-s1", "eval-student-a0.1-T2-word-s1"]
    for before, after in zip(order, order[1:]):  # no student starts before its teacher's cache exists
        assert records[after]["StartTime"] >= records[before]["EndTime"], (before, after)
    assert cells(tmp_path / "slurm") == cells(tmp_path / "local")
    for run in ("teacher-a0.1-s1", "student-a0.1-T2-word-s1"):
        bleu = [json.loads((tmp_path / side / run / "bleu.json").read_text()) for side in ("local", "slurm")]
        assert bleu[0]["sacrebleu"]["score"] == bleu[1]["sacrebleu"]["score"]


def two_task_job(tmp_path, script):
    """A 2-task job on one node whose batch step runs SCRIPT with the recipes' functions loaded."""
    (tmp_path / "job.sh").write_text(
        f"#!/usr/bin/env bash\nset -euo pipefail\nsource {REPO}/recipes/nmt_lib.sh\nGPUS=0\n{script}\n"
    )
    return subprocess.run(
        [
            "sbatch",
            "--wait",
            "--ntasks=2",
            "--nodes=1",
            "--cpus-per-task=1",
            f"--output={tmp_path}/job.out",
            str(tmp_path / "job.sh"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )


def test_two_slurm_tasks_of_fairseq_equal_one_process_with_update_freq_two(tmp_path, toy_bin, teacher_checkpoint):
    common = [*STUDENT, "--teacher-path", str(teacher_checkpoint), "--max-update", "3", "--dropout", "0"]
    common += ["--ddp-backend", "legacy_ddp", "--no-save", "--disable-validation", *TINY_TRANSFORMER, *TRAINING]
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairseq_cli.train",
            str(toy_bin),
            "--user-dir",
            str(REPO / "lskd_fairseq"),
            *common,
            "--update-freq",
            "2",
            "--save-dir",
            str(tmp_path / "single"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert single.returncode == 0, single.stderr
    args = " ".join(map(shlex.quote, [str(toy_bin), "--user-dir", str(REPO / "lskd_fairseq"), *common]))
    result = two_task_job(tmp_path, f"fairseq_train {args} --save-dir {tmp_path}/ddp")
    output = (tmp_path / "job.out").read_text()
    assert result.returncode == 0, output[-3000:]
    assert "distributed init (rank 1)" in output
    single_losses = [float(u["loss"]) for u in logged_updates(single.stdout)]
    ddp_losses = [float(u["loss"]) for u in logged_updates(output)][: len(single_losses)]
    assert len(single_losses) == 3
    assert ddp_losses == pytest.approx(single_losses, rel=1e-3)


def test_two_slurm_tasks_of_lskd_vision_equal_one_process(tmp_path):
    common = ["train-teacher", "--dataset", "digits", "--epochs", "1", "--device", "cpu", "--alpha", "0.1"]
    single = subprocess.run(
        [sys.executable, "-m", "lskd_vision.cli", *common, "--batch-size", "64", "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert single.returncode == 0, single.stderr
    args = " ".join(map(shlex.quote, [*common, "--batch-size", "32", "--out", str(tmp_path / "two")]))
    result = two_task_job(tmp_path, f"launch {args}")
    assert result.returncode == 0, (tmp_path / "job.out").read_text()[-3000:]
    one, two = (json.loads((tmp_path / side / "metrics.json").read_text()) for side in ("one", "two"))
    assert two["world_size"] == 2 and two["global_batch_size"] == 64
    with (tmp_path / "one" / "steps.csv").open() as a, (tmp_path / "two" / "steps.csv").open() as b:
        losses = [(float(x["loss"]), float(y["loss"])) for x, y in zip(csv.DictReader(a), csv.DictReader(b))]
    assert len(losses) > 10
    assert [y for _, y in losses] == pytest.approx([x for x, _ in losses], abs=1e-4)


def test_a_partition_slurm_rejects_is_one_line_and_nothing_is_submitted(tmp_path):
    before = slurm("squeue", "--noheader", "--format=%i")
    result = recipe("digits", {"EXECUTOR": "slurm", "RUN_DIR": "grid", "PARTITION": "no-such-partition"}, tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and result.stdout == "", result.stderr
    assert lines[0].startswith("digits: error: sbatch refused the first job (teacher-a0.0-s1): ")
    assert "invalid partition" in lines[0].lower() and lines[0].endswith("; nothing submitted")
    assert slurm("squeue", "--noheader", "--format=%i") == before
    assert list(tmp_path.iterdir()) == []
