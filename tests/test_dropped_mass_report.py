"""lskd-results shows beside the grid the mass each teacher's top-k cache drops, as lskd-dump-teacher
reported it (``{subset}.dropped_mass.json`` in the teacher run's cache folders)."""

import json
from pathlib import Path

from lskd_grid.runs import RunManifest, write_manifest
from lskd_report.dropped_mass import dropped_mass_rows
from lskd_report.results import main


def run(grid: Path, name: str, manifest: RunManifest, top1: float) -> Path:
    folder = grid / name
    write_manifest(folder, manifest)
    (folder / "metrics.json").write_text(json.dumps({"best": {"top1": top1}}))
    return folder


def report(mean_t1: float, mean_t2: float) -> dict:
    quantiles = {"0.1": 0.001, "0.5": 0.01, "0.9": 0.2, "0.99": 0.5}
    return {
        "tokens": 100,
        "temperatures": {
            "1": {"mean": mean_t1, "quantiles": quantiles},
            "2": {"mean": mean_t2, "quantiles": quantiles},
        },
    }


def test_results_table_lists_each_teachers_dropped_mass(tmp_path, capsys):
    grid = tmp_path / "grid"
    for alpha, mass in ((0.1, (0.09, 0.4)), (0.0, (0.01, 0.2))):
        teacher = run(grid, f"teacher-a{alpha}", RunManifest("teacher", alpha, 1), 90.0)
        (teacher / "cache-top4").mkdir()
        (teacher / "cache-top4" / "valid.dropped_mass.json").write_text(json.dumps(report(*mass)))
        run(grid, f"student-a{alpha}", RunManifest("student", alpha, 1, 2.0, "word", f"teacher-a{alpha}"), 80.0)
    rows = dropped_mass_rows(grid)
    assert [(r["alpha"], r["temperature"], r["mean"]) for r in rows] == [
        (0.0, 1.0, 0.01),
        (0.0, 2.0, 0.2),
        (0.1, 1.0, 0.09),
        (0.1, 2.0, 0.4),
    ]
    out = tmp_path / "results"
    main([str(grid), "--paper", "none", "--metric", "best.top1", "--out", str(out)])
    text = Path(f"{out}.md").read_text()
    assert "Teacher mass outside its top k" in text
    assert "| teacher-a0.1 | 0.1 | cache-top4 | valid | 2 | 0.4 | 0.01 | 0.2 | 0.5 |" in text
    assert json.loads(Path(f"{out}.json").read_text())["dropped_mass"] == rows
    assert capsys.readouterr().out == text
