"""`make demo` in its smallest setting: both tables, the figure and the measures, and a second run that reuses
every stage (nothing trained again, no output but the digits table rewritten, and that one unchanged)."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_demo(demo_dir):
    env = {**os.environ, "DEMO_DIR": str(demo_dir), "DEMO_SIZE": "smallest", "DEMO_TEMPERATURES": "1 3",
           "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(["bash", str(REPO / "recipes" / "demo.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def table(path):
    with open(path) as handle:
        return {(row["role"], row["T"]): row for row in csv.DictReader(handle)}


def test_demo_smallest_setting(tmp_path):
    output = run_demo(tmp_path)
    for part in ("translation", "digits"):
        rows = table(tmp_path / part / "results.csv")
        assert set(rows) == {("Teacher", "-"), ("Student", "1"), ("Student", "3")}
        for row in rows.values():
            assert all(0.0 <= float(row[column]) <= 100.0 for column in ("α = 0.0", "α = 0.1"))
        assert (tmp_path / part / "results.md").read_text() in output
    assert (tmp_path / "digits" / "diffusion.png").read_bytes()[:8] == PNG_SIGNATURE
    report = json.loads((tmp_path / "digits" / "diffusion.json").read_text())
    assert len(report["models"]) == 6
    for name in report["models"]:
        assert f"| {name} |" in output
    summarised_each_run = [tmp_path / "digits" / name for name in ("results.md", "results.csv")]
    rewritten = {path: path.read_bytes() for path in summarised_each_run}
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file() and path not in rewritten}
    second = run_demo(tmp_path)
    progress = re.findall(r"^(start|skip|done|run) +(\S+?):?(?: |$)", second, re.M)
    assert progress and {kind for kind, _ in progress} == {"skip"}, second
    after = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file() and path not in rewritten}
    assert after == before
    assert {path: path.read_bytes() for path in rewritten} == rewritten
