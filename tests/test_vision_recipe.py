"""recipes/digits.sh lays out the grid the results-table command reads, draws the diffusion figure,
skips finished stages and hands the run folder to lskd-results when that command exists."""
import json
import os

from lskd_vision_testdata import REPO, run


def test_digits_recipe_grid_layout_skip_and_results_call(tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "lskd-results-calls.txt"
    (fake_bin / "lskd-results").write_text(f'#!/usr/bin/env bash\necho "$@" >> {calls}\n')
    (fake_bin / "lskd-results").chmod(0o755)
    run_dir = tmp_path / "grid"
    env = {"ALPHAS": "0 0.1", "TEMPERATURES": "64", "DIFFUSION_TEMPERATURES": "64", "EPOCHS": "1",
           "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}

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
    expected_call = f"{run_dir} --paper cub-r18 --metric best.top1 --out {run_dir}/results"
    assert calls.read_text().splitlines() == [expected_call, expected_call]
