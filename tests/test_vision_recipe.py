"""recipes/digits.sh trains a teacher and students per alpha and seed, records each run's manifest, draws each
seed's diffusion figure, calls lskd-results on the grid folder, and on a second run starts no process."""

import json
import stat
import sys

import pytest

from lskd_grid.runs import RunManifest, find_runs
from lskd_vision_testdata import run
from repo_root import REPO

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"

SEEDS = (1, 2)
TEACHERS = [f"teacher-a{a}-s{s}" for s in SEEDS for a in ("0.0", "0.15")]
STUDENTS = [f"student-a{a}-T64-word-s{s}" for s in SEEDS for a in ("0.0", "0.15")]


def test_digits_recipe_seeds_manifests_figures_results_and_reuse(tmp_path):
    run_dir = tmp_path / "grid"
    env = {
        "RUN_DIR": str(run_dir),
        "ALPHAS": "0 0.15",
        "TEMPERATURES": "64",
        "SEEDS": "1 2",
        "DIFFUSION_TEMPERATURES": "64",
        "EPOCHS": "1",
        "PYTHON": sys.executable,
    }

    first = run(["bash", str(REPO / "recipes" / "digits.sh")], env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    runs = {path.name: manifest for path, manifest in find_runs(run_dir)}
    assert sorted(runs) == sorted(TEACHERS + STUDENTS)
    for name in TEACHERS + STUDENTS:
        summary = json.loads((run_dir / name / "metrics.json").read_text())
        assert set(summary["final"]) == set(summary["best"]) - {"epoch"} == {"top1", "top5"}
        assert summary["config"]["seed"] == runs[name].seed
        assert (run_dir / "logs" / f"{name}.log").is_file()
    assert runs["teacher-a0.15-s2"] == RunManifest("teacher", 0.15, seed=2)
    assert runs["student-a0.15-T64-word-s2"] == RunManifest(
        "student", 0.15, seed=2, temperature=64.0, kd_mode="word", teacher="teacher-a0.15-s2"
    )
    student = json.loads((run_dir / "student-a0.15-T64-word-s2" / "metrics.json").read_text())
    assert student["config"]["temperature"] == 64.0
    assert student["config"]["teacher"] == str(run_dir / "teacher-a0.15-s2" / "best.pth")

    for seed in SEEDS:
        diffusion = json.loads((run_dir / f"diffusion-s{seed}" / "diffusion.json").read_text())
        assert list(diffusion["models"]) == [
            "teacher α 0.0",
            "teacher α 0.15",
            "student T 64, teacher α 0.0",
            "student T 64, teacher α 0.15",
        ]
        assert diffusion["inputs"]["checkpoints"]["student T 64, teacher α 0.15"]["path"] == str(
            run_dir / f"student-a0.15-T64-word-s{seed}" / "best.pth"
        )
        assert (run_dir / f"diffusion-s{seed}" / "diffusion.png").is_file()
    assert (
        f"-m lskd_report.results {run_dir} --paper none --metric best.top1"
        in (run_dir / "logs" / "results.log").read_text()
    )
    assert (run_dir / "results.md").read_text() in first.stdout

    outputs = [path for path in run_dir.rglob("*") if path.is_file()]
    mtimes = {path: path.stat().st_mtime_ns for path in outputs}
    spy = tmp_path / "python"
    spy.write_text(f'#!/bin/sh\necho "$*" >>"{tmp_path}/starts"\nexec "{sys.executable}" "$@"\n')
    spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    second = run(["bash", str(REPO / "recipes" / "digits.sh")], env={**env, "PYTHON": str(spy)})
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("skip ") == len(TEACHERS + STUDENTS) + len(SEEDS) + 1
    assert "start " not in second.stdout
    assert (tmp_path / "starts").read_text().splitlines() == ["-m lskd_grid.settle digits"]
    assert mtimes == {path: path.stat().st_mtime_ns for path in outputs}
