"""`make demo` in its smallest setting: both grids' manifests and tables, the figure and the measures, the seq-KD
students when lskd-distill-corpus is installed, and a second run that reuses every stage."""

import json
import os
import stat
import subprocess
import sys

import pytest

from lskd_grid.recipe_table import distill_command
from lskd_grid.runs import find_runs
from repo_root import REPO

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_demo(demo_dir, python=sys.executable):
    env = {
        **os.environ,
        "DEMO_DIR": str(demo_dir),
        "DEMO_SIZE": "smallest",
        "DEMO_TEMPERATURES": "1 3",
        "DEMO_SEEDS": "1",
        "DEMO_KD_MODES": "word seq" if distill_command() else "word",
        "DEMO_DIGITS_SEEDS": "1 2",
        "PYTHON": str(python),
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(["bash", str(REPO / "recipes" / "demo.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_demo_smallest_setting(tmp_path):
    output = run_demo(tmp_path / "demo")
    demo = tmp_path / "demo"
    seq = ["seq"] if distill_command() else []
    expected = {
        "translation": {f"teacher-a{a}-s1" for a in ("0.0", "0.1")}
        | {f"student-a{a}-T{t}-word-s1" for a in ("0.0", "0.1") for t in (1, 3)}
        | {f"student-a{a}-seq-s1" for a in ("0.0", "0.1") for _ in seq},
        "digits": {f"teacher-a{a}-s{s}" for a in ("0.0", "0.1") for s in (1, 2)}
        | {f"student-a{a}-T{t}-word-s{s}" for a in ("0.0", "0.1") for t in (1, 3) for s in (1, 2)},
    }
    for part, runs in expected.items():
        manifests = {path.name: manifest for path, manifest in find_runs(demo / part)}
        assert set(manifests) == runs
        for name, manifest in manifests.items():
            assert (demo / part / name / manifest.metrics).is_file(), name
        assert (demo / part / "results.md").read_text() in output
    diffusion = demo / "digits" / "diffusion-s1"
    assert (diffusion / "diffusion.png").read_bytes()[:8] == PNG_SIGNATURE
    report = json.loads((diffusion / "diffusion.json").read_text())
    assert len(report["models"]) == 6
    for name in report["models"]:
        assert f"| {name} |" in output

    spy = tmp_path / "python"
    spy.write_text(f'#!/bin/sh\necho "$*" >>"{tmp_path}/starts"\nexec "{sys.executable}" "$@"\n')
    spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    second = run_demo(demo, spy)
    assert "start " not in second
    assert (tmp_path / "starts").read_text().splitlines() == [
        "-m lskd_grid.settle demo",
        "-m lskd_grid.settle toy_translation",
        "-m lskd_grid.settle digits",
        f"-m lskd_report.diffusion_report {diffusion}/diffusion.json",
    ]
