"""The mass a top-k teacher drops, beside the grid: what ``lskd-dump-teacher`` reported for each teacher's
caches (``{subset}.dropped_mass.json``), one table row per teacher, cache, subset and temperature, so a
reader sees for each α how much of its teacher the word-level students never saw (docs/transfers.md)."""

import json
from pathlib import Path

from lskd_grid.runs import MANIFEST

SUFFIX = ".dropped_mass.json"


def dropped_mass_rows(grid_folder) -> list[dict]:
    """Every teacher run's dropped-mass reports under ``grid_folder``, ordered by α, seed, cache, subset, T."""
    rows = []
    for report_path in Path(grid_folder).glob(f"*/*/*{SUFFIX}"):
        run = report_path.parent.parent
        manifest_path = run / MANIFEST
        if not manifest_path.is_file():
            continue
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("kind") != "teacher":
            continue
        report = json.loads(report_path.read_text())
        for temperature, mass in report["temperatures"].items():
            rows.append(
                {
                    "teacher": run.name,
                    "alpha": manifest["alpha"],
                    "seed": manifest.get("seed"),
                    "cache": report_path.parent.name,
                    "subset": report_path.name[: -len(SUFFIX)],
                    "temperature": float(temperature),
                    "tokens": report["tokens"],
                    "mean": mass["mean"],
                    "quantiles": mass["quantiles"],
                }
            )
    return sorted(rows, key=lambda r: (r["alpha"], r["seed"] or 0, r["cache"], r["subset"], r["temperature"]))


def dropped_mass_markdown(rows: list[dict]) -> list[str]:
    """A Markdown section of the rows (nothing when the grid has no top-k cache)."""
    if not rows:
        return []
    lines = [
        "Teacher mass outside its top k (lskd-dump-teacher's report; quantiles over the subset's tokens):",
        "",
        "| teacher | α | cache | subset | T | mean | median | 90 % | 99 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        q = row["quantiles"]
        lines.append(
            f"| {row['teacher']} | {row['alpha']:g} | {row['cache']} | {row['subset']} | {row['temperature']:g} | "
            f"{row['mean']:.3g} | {q['0.5']:.3g} | {q['0.9']:.3g} | {q['0.99']:.3g} |"
        )
    return lines + [""]
