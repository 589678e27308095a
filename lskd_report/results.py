"""``lskd-results``: a grid of runs as the paper's α × T table over seeds, its plots, and the paper's claims checked.

The grid folder holds one folder per run, each with the manifest ``run.json`` (``lskd_grid.runs``) that says
what the run is (teacher or student, α, T, KD mode, seed) and which metrics file holds its scores; the value
shown is the dotted key ``--metric`` inside that file. Each cell is the mean ± sample standard deviation
over its seeds, with n; the paper's published number sits beside it. The claims are checked with t intervals
paired by seed (``lskd_report.verdicts``). Writes PREFIX.md, PREFIX.csv, PREFIX.json, PREFIX-verdicts.json,
PREFIX-comparisons.csv and PNG plots next to them, and prints the Markdown.

A grid whose students use more than one transfer (the recipes' ``DIVERGENCES``) gets all of that once per
divergence D, under PREFIX-D (each with the teachers and the sequence-level students, which have no transfer),
and PREFIX.md, PREFIX.csv (a ``transfer`` column first) and PREFIX.json that gather them.
"""

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lskd.errors import InvalidConfig
from lskd_grid.runs import KD_MODES
from lskd_report.aggregate import (
    STUDENT,
    TEACHER_ROW,
    Cell,
    Grid,
    Row,
    collect,
    collect_diffusion,
    diffusion_reports,
    number_key,
    sorted_cells,
    transfers_of,
)
from lskd_report.deployed import caption as deployed_caption
from lskd_report.deployed import cell_deployed, collect_deployed, csv_header, csv_values, deployed_text
from lskd_report.dropped_mass import dropped_mass_markdown, dropped_mass_rows
from lskd_report.paper_results import paper_table, paper_tables
from lskd_report.plots import diffusion_figure, png_bytes, score_figure
from lskd_report.verdicts import (
    CONFIDENCE,
    POWER,
    SEED_COUNTS,
    UNTESTABLE,
    check_grid,
    check_level,
    detectable,
    mean_interval,
    paired_spread,
    percent,
    rule_text,
)
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import atomic_write_json, atomic_write_text

MISSING = "—"
FEWER = "†"
PAPER_MODE = "word"  # the paper's students are all word-level (per-token or per-image logit) KD


def paper_metric_for(table: dict, metric: str, override: Optional[str]) -> str:
    """The paper column matching ``--metric``: its only metric, or the one named by the key's last part."""
    if override:
        if override not in table["metrics"]:
            raise InvalidConfig(f"--paper-metric {override!r}: the table reports {', '.join(table['metrics'])}")
        return override
    if len(table["metrics"]) == 1:
        return table["metrics"][0]
    last = metric.split(".")[-1]
    if last not in table["metrics"]:
        raise InvalidConfig(
            f"--metric {metric!r}: cannot tell which of {', '.join(table['metrics'])} it is; pass --paper-metric"
        )
    return last


def paper_values(table: dict, column: str) -> dict:
    """(Row, α) -> the paper's number; its students are word-level KD."""
    values = {(TEACHER_ROW, float(alpha)): cell[column] for alpha, cell in table["teacher"].items()}
    for temperature, row in table["student"].items():
        values.update(
            {(Row(STUDENT, PAPER_MODE, float(temperature)), float(alpha)): cell[column] for alpha, cell in row.items()}
        )
    return values


@dataclass
class Report:
    """A collected grid with the paper's numbers: the tables, the verdicts and the plots it yields."""

    grid: Grid
    prefix: Path
    paper_id: str
    paper_column: Optional[str]
    paper: Optional[dict]
    caption: str
    title: str
    confidence: float
    deployed: dict = field(default_factory=dict)  # lskd_report.deployed: quantisation -> cells

    @property
    def modes(self) -> list[str]:
        return [m for m in KD_MODES if m in self.grid.modes]

    @property
    def alphas(self) -> list[float]:
        extra = {alpha for _, alpha in self.paper} if self.paper else set()
        return sorted(self.grid.alphas | extra)

    def temperatures(self, mode: str) -> set:
        own = set(self.grid.modes.get(mode, set()))
        if self.paper and mode == PAPER_MODE:
            own |= {row.temperature for row, _ in self.paper if row.role == STUDENT}
        return own

    def table_rows(self) -> list[tuple]:
        """(label, T label, T) per table row: the teacher, then every T any KD mode has, pure seq-KD's none first."""
        temperatures = set().union(*(self.temperatures(m) for m in self.modes)) if self.modes else set()
        ordered = sorted(temperatures, key=lambda t: -1.0 if t is None else t)
        return [("Teacher", "-", TEACHER_ROW)] + [("Student", number_key(t), t) for t in ordered]

    def row_for(self, entry, mode: str) -> Optional[Row]:
        """The cell row of a table row in ``mode``'s column; None where the mode has no such T."""
        if entry is TEACHER_ROW:
            return TEACHER_ROW
        return Row(STUDENT, mode, entry) if entry in self.temperatures(mode) else None

    def columns(self) -> list[tuple]:
        """(α, KD mode) per column of ours: KD modes side by side under each α."""
        modes = self.modes or [PAPER_MODE]
        return [(alpha, mode) for alpha in self.alphas for mode in modes]

    def column_name(self, alpha: float, mode: str) -> str:
        suffix = f" ({mode})" if len(self.modes) > 1 else ""
        return f"α = {number_key(alpha)}{suffix}"

    def header(self) -> list[str]:
        names = ["", "T"]
        for alpha in self.alphas:
            names += [self.column_name(alpha, mode) for a, mode in self.columns() if a == alpha]
            if self.paper is not None:
                names.append(f"paper α = {number_key(alpha)}")
        return names

    def cell_text(self, row: Optional[Row], alpha: float) -> str:
        if row is None:
            return ""
        cell = self.grid.cell(row, alpha)
        if cell.n == 0:
            return MISSING
        text = estimate_text(cell.mean, cell.sd, cell.n) + (FEWER if self.grid.fewer_seeds(row, alpha) else "")
        return text + deployed_text(self.deployed, row, alpha)

    def paper_text(self, entry, alpha: float) -> str:
        row = self.row_for(entry, PAPER_MODE)
        if row is None:
            return ""
        value = self.paper.get((row, alpha))
        return MISSING if value is None else f"{value:.3f}"

    def markdown_table(self) -> list[str]:
        lines = ["| " + " | ".join(self.header()) + " |", "|" + "---|" * len(self.header())]
        for label, t_label, entry in self.table_rows():
            cells = [label, t_label]
            for alpha in self.alphas:
                cells += [self.cell_text(self.row_for(entry, m), a) for a, m in self.columns() if a == alpha]
                if self.paper is not None:
                    cells.append(self.paper_text(entry, alpha))
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def csv_text(self) -> str:
        """One line per table row; per column of ours its mean, sd, n, missing-run count and the t interval
        of the mean at the report's level (the score plot's error bars)."""
        header = ["role", "T"]
        level = percent(self.confidence).replace(" ", "")
        for alpha in self.alphas:
            for a, mode in self.columns():
                if a == alpha:
                    name = self.column_name(alpha, mode)
                    header += [name, f"{name} sd", f"{name} n", f"{name} missing"]
                    header += [f"{name} {level} CI low", f"{name} {level} CI high"]
                    header += csv_header(name, self.deployed)
            if self.paper is not None:
                header.append(f"paper α = {number_key(alpha)}")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for label, t_label, entry in self.table_rows():
            line = [label, t_label]
            for alpha in self.alphas:
                for a, mode in self.columns():
                    if a != alpha:
                        continue
                    row = self.row_for(entry, mode)
                    if row is None:
                        line += [""] * 6 + csv_values(self.deployed, None, alpha)
                        continue
                    cell = self.grid.cell(row, alpha)
                    interval = mean_interval(cell.values, self.confidence)
                    line += [
                        "" if cell.mean is None else f"{cell.mean:.3f}",
                        "" if cell.sd is None else f"{cell.sd:.3f}",
                        str(cell.n),
                        str(len(cell.missing)),
                        "" if interval is None else f"{interval.low:.3f}",
                        "" if interval is None else f"{interval.high:.3f}",
                        *csv_values(self.deployed, row, alpha),
                    ]
                if self.paper is not None:
                    text = self.paper_text(entry, alpha)
                    line.append("" if text == MISSING else text)
            writer.writerow(line)
        return out.getvalue()

    # --- verdicts -----------------------------------------------------------------------------------

    def student_cells(self, mode: str, source: str) -> tuple[dict, list[str], list[str]]:
        """(α key, T key) -> {seed: score} (None: no score) of ``mode``'s tempered students, from our seeds
        (``source`` "ours") or the paper's single numbers ("paper", as seed 0), over the grid's own α and T."""
        alphas = sorted(self.grid.alphas)
        temperatures = sorted(t for t in self.grid.modes.get(mode, set()) if t is not None)
        cells = {}
        for alpha in alphas:
            for t in temperatures:
                row = Row(STUDENT, mode, t)
                if source == "paper":
                    value = self.paper.get((row, alpha))
                    cell = None if value is None else {0: value}
                else:
                    cell = dict(self.grid.cell(row, alpha).values) or None
                cells[(number_key(alpha), number_key(t))] = cell
        return cells, [number_key(a) for a in alphas], [number_key(t) for t in temperatures]

    def verdicts(self) -> dict:
        """KD mode -> (our verdicts, the paper's verdicts on the same cells or None)."""
        checked = {}
        for mode in self.modes:
            ours = check_grid(*self.student_cells(mode, "ours"), level=self.confidence)
            if not ours:
                continue
            paper = (
                check_grid(*self.student_cells(mode, "paper"), level=self.confidence, by_sign=True)
                if self.paper is not None and mode == PAPER_MODE
                else None
            )
            checked[mode] = (ours, paper)
        return checked

    def verdict_lines(self, checked: dict) -> list[str]:
        lines = [
            "### The paper's predictions on this grid",
            "",
            f"Rule: {rule_text(self.confidence)}",
            "",
        ]
        if not checked:
            return lines + ["No claim to check: the grid needs an LS teacher (α > 0) with tempered students.", ""]
        paper_header = " | paper's numbers, same cells (by sign)" if self.paper is not None else ""
        numbers = f"differences: mean, {percent(self.confidence)} CI, ± smallest detectable, method"
        for mode, (ours, paper) in checked.items():
            if len(checked) > 1 or mode != PAPER_MODE:
                lines += [f"KD mode {mode}:", ""]
            lines += [
                f"| # | claim | on this grid | {numbers}{paper_header} |",
                "|---|---|---|---|" + ("---|" if paper_header else ""),
            ]
            for index, verdict in enumerate(ours):
                used = verdict.note or "; ".join(c.text() for c in verdict.deciding())
                cells = [str(verdict.paper_item), verdict.claim, f"**{verdict.verdict}**", used]
                if paper_header:
                    cells.append(paper[index].verdict if paper else "")
                lines.append("| " + " | ".join(cells) + " |")
            lines += [""] + self.seed_lines(ours)
        return lines

    def seed_lines(self, verdicts: list) -> list[str]:
        """How the detectable difference shrinks with seeds, at this grid's own spread of paired differences."""
        sd, count = paired_spread(verdicts)
        if sd is None:
            return []
        level = percent(self.confidence)
        return [
            f"Seeds and the smallest detectable difference, at this grid's spread (median sd of the per-seed "
            f"differences between two cells: {sd:.3f}, over {count} of them):",
            "",
            "| seeds | " + " | ".join(map(str, SEED_COUNTS)) + " |",
            "|---|" + "---|" * len(SEED_COUNTS),
            f"| {level} interval excludes 0 beyond | "
            + " | ".join(f"{detectable(sd, n, self.confidence):.3f}" for n in SEED_COUNTS)
            + " |",
            f"| found {percent(POWER)} of the time (≈) | "
            + " | ".join(f"{detectable(sd, n, self.confidence, POWER):.3f}" for n in SEED_COUNTS)
            + " |",
            "",
        ]

    def verdicts_document(self, checked: dict) -> dict:
        entries = []
        for mode, (ours, paper) in checked.items():
            for index, verdict in enumerate(ours):
                entry = {"kd_mode": mode, **verdict.to_dict()}
                if paper is not None:
                    entry["paper_verdict"] = paper[index].verdict
                entries.append(entry)
        return {
            "grid": str(self.grid.folder),
            "metric": self.grid.metric,
            "higher_is_better": True,
            "level": self.confidence,
            "rule": rule_text(self.confidence),
            "verdicts": entries,
            "untestable": sum(e["verdict"] == UNTESTABLE for e in entries),
        }

    def comparisons_csv(self, checked: dict) -> str:
        """One line per comparison of our verdicts: the difference, its interval, method and per-seed values."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["kd_mode", "claim", "difference", "outcome", "method", "level", "mean", "n", "sd", "dof"]
            + ["low", "high", "half_width", "per_seed"]
        )
        for mode, (ours, _) in checked.items():
            for verdict in ours:
                for comparison in verdict.comparisons:
                    i = comparison.interval
                    writer.writerow(
                        [mode, verdict.paper_item, comparison.expression(), comparison.outcome, i.method, i.level]
                        + [number(i.mean), i.n, number(i.sd), number(i.dof)]
                        + [number(i.low), number(i.high), number(i.half_width)]
                        + [" ".join(f"{s}:{d:.6g}" for s, d in sorted(i.per_seed.items()))]
                    )
        return out.getvalue()


def number(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.6g}"


def estimate_text(mean: float, sd, n: int) -> str:
    """A cell as ``mean ± sd (n)``; ``mean (1)`` for one seed, which has no spread."""
    spread = "" if sd is None else f" ± {sd:.3f}"
    return f"{mean:.3f}{spread} ({n})"


def cell_document(row: Row, alpha: float, cell: Cell, grid: Grid, paper: Optional[float] = None) -> dict:
    return {
        "role": row.role,
        "kd_mode": row.kd_mode,
        "T": row.temperature,
        "alpha": alpha,
        "n": cell.n,
        "mean": cell.mean,
        "sd": cell.sd,
        "seeds": {str(s): v for s, v in sorted(cell.values.items())},
        "missing": [vars(m) for m in cell.missing],
        "fewer_seeds": grid.fewer_seeds(row, alpha),
        "paper": paper,
    }


def data_sentence(manifest_path: Path) -> str:
    """Which data produced the numbers, from a data-prep manifest (``lskd-prep.json``): its source and the note
    written with it, which says whether the paper's numbers compare."""
    try:
        manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidConfig(
            f"--data-manifest {manifest_path}: {error} (expected the lskd-prep.json of the grid's data)"
        ) from None
    source = manifest.get("source")
    if source is None:
        return f" Data: `{manifest_path}` (profile {manifest.get('profile')}; its source is not recorded)."
    return f" Data: {source}, {manifest.get('source_note', '')} (profile {manifest.get('profile')}; `{manifest_path}`)."


def build_report(
    grid_dir: Path,
    metric: str,
    paper_id: str,
    prefix: Path,
    metrics_file: Optional[str] = None,
    paper_metric: Optional[str] = None,
    confidence: float = CONFIDENCE,
    data_manifest: Optional[Path] = None,
    transfer: Optional[str] = None,
) -> Report:
    check_level(confidence)
    paper = table = column = None
    if paper_id != "none":
        if paper_id not in paper_tables():
            raise InvalidConfig(f"--paper {paper_id!r}: expected one of {', '.join(paper_tables())}, or none")
        table = paper_table(paper_id)
        column = paper_metric_for(table, metric, paper_metric)
    grid = collect(grid_dir, metric, metrics_file, transfer)
    title, caption = (
        f"Results of {grid_dir}",
        (
            f"Ours: `{metric}` from each run's {metrics_file or 'metrics file (its run.json names it)'}, "
            f"mean ± sample sd (n seeds); {FEWER}: fewer seeds than the grid's most ({grid.max_seeds}); "
            f"{MISSING}: no score."
        ),
    )
    if table is not None:
        paper = paper_values(table, column)
        title = f"{table['title']} ({paper_id})"
        caption += f" Paper: `{column}`, {table['source']}." + (f" {table['note']}" if "note" in table else "")
    if data_manifest is not None:
        caption += data_sentence(data_manifest)
    if transfer is not None:
        title += f", transfer {transfer}"
        caption += f" KD students of divergence {transfer} (teachers and seq-KD students, which have none, in each)."
    deployed = collect_deployed(grid, metric, metrics_file)
    caption += deployed_caption(deployed)
    return Report(grid, prefix, paper_id, column, paper, caption, title, confidence, deployed)


def score_plots(report: Report) -> dict:
    """PREFIX-score[-MODE].png -> PNG bytes, per KD mode with tempered students."""
    plots = {}
    tempered = [m for m in report.modes if any(t is not None for t in report.grid.modes[m])]
    for mode in tempered:
        rows = [Row(STUDENT, mode, t) for t in sorted(t for t in report.temperatures(mode) if t is not None)]
        suffix = "" if len(tempered) == 1 else "-" + mode.replace("+", "-")
        title = f"{report.title}: {report.grid.metric} vs T" + (f", KD mode {mode}" if len(report.modes) > 1 else "")
        paper = report.paper if mode == PAPER_MODE else None
        figure = score_figure(
            report.grid.cells, rows, report.alphas, paper, title, report.grid.metric, report.confidence
        )
        plots[Path(f"{report.prefix}-score{suffix}.png")] = png_bytes(figure)
    return plots


def diffusion_plots(report: Report) -> tuple[dict, dict, list[str]]:
    """PREFIX-diffusion[-MODE].png -> PNG bytes from the grid's diffusion reports, the measures' cells as
    JSON, and the models that belong to no run of the grid."""
    reports = diffusion_reports(report.grid.folder)
    if not reports:
        return {}, {}, []
    measures, unmatched = collect_diffusion(report.grid, reports)
    keys = {key for cells in measures.values() for key in cells}
    modes = [m for m in KD_MODES if any(row.kd_mode == m and row.temperature is not None for row, _ in keys)]
    plots = {}
    for mode in modes:
        rows = sorted({row for row, _ in keys if row.kd_mode == mode and row.temperature is not None}, key=Row.sort_key)
        alphas = sorted({alpha for _, alpha in keys})
        suffix = "" if len(modes) == 1 else "-" + mode.replace("+", "-")
        sources = ", ".join(str(p.relative_to(report.grid.folder)) for p in reports)
        title = f"Diffusion measures vs T ({sources}, penultimate space)" + (
            f", KD mode {mode}" if len(modes) > 1 else ""
        )
        plots[Path(f"{report.prefix}-diffusion{suffix}.png")] = png_bytes(
            diffusion_figure(measures, rows, alphas, TEACHER_ROW, title)
        )
    document = {
        label: [cell_document(row, alpha, cell, report.grid) for (row, alpha), cell in sorted_cells(cells)]
        for label, cells in measures.items()
    }
    return plots, document, unmatched


def markdown(report: Report, checked: dict, plots: list[Path], unmatched: list[str]) -> str:
    grid = report.grid
    lines = [f"## {report.title}", "", report.caption, "", *report.markdown_table(), ""]
    missing = grid.missing_runs()
    if missing:
        lines += [f"Missing runs ({len(missing)}: a manifest but no score; not averaged):", ""]
        lines += [f"- {m.run} (seed {m.seed}): {m.reason}" for m in missing] + [""]
    empty = [
        f"{row.label.lower()} α {number_key(a)}" + (f" T {row.t_label} ({row.kd_mode})" if row.role == STUDENT else "")
        for row, a in grid.empty_cells()
    ]
    if empty:
        lines += [f"Cells without a score: {', '.join(empty)}.", ""]
    lines += report.verdict_lines(checked)
    if plots:
        lines += ["Plots:", ""] + [f"- {path}" for path in plots] + [""]
    if unmatched:
        lines += [f"Diffusion models that are no run of this grid (not plotted): {', '.join(unmatched)}.", ""]
    return "\n".join(lines)


def write_outputs(report: Report) -> str:
    """Compute everything, then write PNGs, JSON, Markdown and last the CSV (the recipes' done marker)."""
    checked = report.verdicts()
    plots = score_plots(report)
    diffusion, diffusion_cells, unmatched = diffusion_plots(report)
    plots.update(diffusion)
    text = markdown(report, checked, list(plots), unmatched)
    grid = report.grid
    dropped = dropped_mass_rows(grid.folder)
    text += "\n".join(["", *dropped_mass_markdown(dropped)]) if dropped else ""
    cells = [
        cell_document(row, alpha, cell, grid, report.paper.get((row, alpha)) if report.paper else None)
        for (row, alpha), cell in grid.sorted_cells()
    ]
    if report.deployed:
        for document_cell, ((row, alpha), _) in zip(cells, grid.sorted_cells()):
            document_cell["deployed"] = cell_deployed(report.deployed, row, alpha)
    document = {
        "grid": str(grid.folder),
        "metric": grid.metric,
        "paper": report.paper_id,
        "paper_metric": report.paper_column,
        "max_seeds": grid.max_seeds,
        "seeds": sorted({s for c in grid.cells.values() for s in c.values}),
        "cells": cells,
        "missing_runs": [vars(m) for m in grid.missing_runs()],
        "plots": [str(p) for p in plots],
        "diffusion": diffusion_cells,
        "dropped_mass": dropped,
    }
    if report.deployed:
        document["deployed"] = list(report.deployed)
    report.prefix.parent.mkdir(parents=True, exist_ok=True)
    for path, data in plots.items():
        path.write_bytes(data)
    atomic_write_json(Path(f"{report.prefix}.json"), document)
    atomic_write_json(Path(f"{report.prefix}-verdicts.json"), report.verdicts_document(checked))
    atomic_write_text(Path(f"{report.prefix}-comparisons.csv"), report.comparisons_csv(checked))
    atomic_write_text(Path(f"{report.prefix}.md"), text)
    atomic_write_text(Path(f"{report.prefix}.csv"), report.csv_text())
    return text


@dataclass
class ResultsConfig:
    run_dir: Path = option(positional=True, help="grid folder: one folder per run, each with a run.json")
    paper: str = option(help=f"paper table id ({', '.join(paper_tables())}) or none")
    metric: str = option(help="dotted key in the metrics file, e.g. best.top1, sacrebleu.score")
    out: Path = option(help="output prefix: writes PREFIX.md, .csv, .json, -verdicts.json and PREFIX-*.png")
    metrics_file: Optional[str] = option(
        None, default_text="the one each run.json names", help="metrics file name in every run"
    )
    paper_metric: Optional[str] = option(
        None, default_text="inferred from --metric", help="paper column to compare with"
    )
    confidence: Optional[float] = option(
        None, default_text=str(CONFIDENCE), help="level of the two-sided t intervals the verdicts and plots use"
    )
    noise_factor: Optional[float] = option(
        None,
        default_text="none",
        help="deprecated (removed in the next release): K is read as --confidence 2Φ(K) − 1",
    )
    data_manifest: Optional[Path] = option(
        None, default_text="none", help="the data's lskd-prep.json: the caption names its source"
    )


def level_of(confidence: Optional[float], noise_factor: Optional[float]) -> float:
    """--confidence, or the level a deprecated --noise-factor K stood for: the normal band ±K."""
    if noise_factor is None:
        return check_level(CONFIDENCE if confidence is None else confidence)
    if confidence is not None:
        raise InvalidConfig("--noise-factor and --confidence both given: expected --confidence alone")
    if not (math.isfinite(noise_factor) and noise_factor > 0):
        raise InvalidConfig(f"--noise-factor {noise_factor}: expected a number > 0 (deprecated: use --confidence)")
    level = math.erf(noise_factor / math.sqrt(2))
    print(
        f"lskd-results: warning: --noise-factor is deprecated and will be removed; read as --confidence {level:.4f} "
        "(verdicts now use t intervals paired by seed, docs/results.md)",
        file=sys.stderr,
    )
    return check_level(level, "--noise-factor")


def transfer_csv(tables: dict) -> str:
    """Every transfer's CSV in one, a ``transfer`` column first (a header line wherever the columns change)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = None
    for transfer, text in tables.items():
        rows = list(csv.reader(io.StringIO(text)))
        if rows[0] != header:
            header = rows[0]
            writer.writerow(["transfer", *header])
        writer.writerows([transfer, *row] for row in rows[1:])
    return out.getvalue()


def write_transfers(args: "ResultsConfig", confidence: float, transfers: list[str]) -> str:
    """One report per transfer under PREFIX-D, then PREFIX.md, .json and last .csv (the done marker)."""
    reports = [
        build_report(
            args.run_dir,
            args.metric,
            args.paper,
            Path(f"{args.out}-{transfer}"),
            args.metrics_file,
            args.paper_metric,
            confidence,
            args.data_manifest,
            transfer,
        )
        for transfer in transfers
    ]
    texts = [write_outputs(report) for report in reports]
    heading = [
        f"# Results of {args.run_dir}, one table per transfer: {', '.join(transfers)}",
        "",
        "Files: " + ", ".join(f"{report.prefix}.{{md,csv,json}}" for report in reports),
        "",
    ]
    text = "\n".join(heading) + "\n" + "\n".join(texts)
    document = {
        "grid": str(args.run_dir),
        "transfers": {t: f"{report.prefix}.json" for t, report in zip(transfers, reports)},
    }
    atomic_write_json(Path(f"{args.out}.json"), document)
    atomic_write_text(Path(f"{args.out}.md"), text)
    atomic_write_text(Path(f"{args.out}.csv"), transfer_csv({t: r.csv_text() for t, r in zip(transfers, reports)}))
    return text


@console_script("lskd-results")
def main(argv=None) -> None:
    args = parse_config(ResultsConfig, argv, prog="lskd-results", description=__doc__.splitlines()[0])
    confidence = level_of(args.confidence, args.noise_factor)
    transfers = transfers_of(args.run_dir) if Path(args.run_dir).is_dir() else []
    if len(transfers) > 1:
        print(write_transfers(args, confidence, transfers), end="")
        return
    report = build_report(
        args.run_dir,
        args.metric,
        args.paper,
        args.out,
        args.metrics_file,
        args.paper_metric,
        confidence,
        args.data_manifest,
    )
    print(write_outputs(report), end="")


if __name__ == "__main__":
    main()
