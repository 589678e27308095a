"""recipes/digits.sh lays out the grid the results-table command reads, draws the diffusion figure,
skips finished stages and writes the alpha x T results table."""
import csv
import json

import pytest

from lskd_vision_testdata import REPO, run

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"


def test_digits_recipe_grid_layout_skip_and_results_call(tmp_path):
    run_dir = tmp_path / "grid"
    env = {"ALPHAS": "0 0.1", "TEMPERATURES": "64", "DIFFUSION_TEMPERATURES": "64", "EPOCHS": "1"}

    first = run(["bash", str(REPO / "recipes" / "digits.sh"), str(run_dir)], env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    stages = ["teacher-a0.0", "teacher-a0.1", "student-a0.0-T64", "student-a0.1-T64"]
    assert sorted(path.parent.name for path in run_dir.glob("*/metrics.json")) == sorted(stages)
    for stage in stages:
        summary = json.loads((run_dir / stage / "metrics.json").read_text())
        assert set(summary["final"]) == set(summary["best"]) - {"epoch"} == {"top1", "top5"}
        assert (run_dir / "logs" / f"{stage}.log").is_file()
    student = json.loads((run_dir / "student-a0.1-T64" / "metrics.json").read_text())
    assert student["config"]["temperature"] == 64.0
    assert student["config"]["teacher"] == str(run_dir / "teacher-a0.1" / "best.pth")

    diffusion = json.loads((run_dir / "diffusion.json").read_text())
    assert list(diffusion["models"]) == ["teacher α 0.0", "teacher α 0.1", "student T 64, teacher α 0.0",
                                         "student T 64, teacher α 0.1"]
    assert diffusion["inputs"]["checkpoints"]["teacher α 0.1"]["path"] == str(run_dir / "teacher-a0.1" / "best.pth")
    assert (run_dir / "diffusion.png").is_file()

    outputs = [*(f"{stage}/metrics.json" for stage in stages), "diffusion.json"]
    mtimes = {name: (run_dir / name).stat().st_mtime_ns for name in outputs}
    second = run(["bash", str(REPO / "recipes" / "digits.sh"), str(run_dir)], env=env)
    assert second.returncode == 0
    assert second.stdout.count("skip ") == len(stages) + 1
    assert mtimes == {name: (run_dir / name).stat().st_mtime_ns for name in outputs}
    with open(run_dir / "results.csv") as table:
        rows = list(csv.DictReader(table))
    students = [row for row in rows if row[next(iter(row))].lower().startswith("student")]
    assert len(students) == 1 and "64" in students[0].values()
    top1 = {stage: json.loads((run_dir / stage / "metrics.json").read_text())["best"]["top1"] for stage in stages}
    assert "| Student | 64 |" in (run_dir / "results.md").read_text()
    assert f"{top1['student-a0.1-T64']:.3f}" in (run_dir / "results.md").read_text()
