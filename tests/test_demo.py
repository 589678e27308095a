"""`make demo` in its smallest setting: both tables, the figure and the measures, and a fast second run."""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_demo(demo_dir):
    env = {**os.environ, "DEMO_DIR": str(demo_dir), "DEMO_SIZE": "smallest", "DEMO_TEMPERATURES": "1 3",
           "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore"}
    started = time.monotonic()
    result = subprocess.run(["bash", str(REPO / "recipes" / "demo.sh")], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout, time.monotonic() - started


def table(path):
    with open(path) as handle:
        return {(row["role"], row["T"]): row for row in csv.DictReader(handle)}


def test_demo_smallest_setting(tmp_path):
    output, first_seconds = run_demo(tmp_path)
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
    _, second_seconds = run_demo(tmp_path)
    assert second_seconds < first_seconds / 2
