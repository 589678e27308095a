"""A grid of runs, read from their manifests (``run.json``), aggregated over seeds per cell.

A cell is one teacher α and one row: the teacher itself, or a student at one KD mode and temperature. Its
value is the mean over the seeds whose metrics file could be read, with the sample standard deviation
(n - 1) and n beside it. A run whose manifest exists but whose metrics file is absent, unreadable or lacks
the metric is a *missing* run: it is listed, and its cell shows fewer seeds; it is never averaged away.

A grid of several transfers (students of more than one divergence, ``lskd_grid.transfers``) is read one
transfer at a time (``collect(..., transfer=...)``): the teachers and sequence-level students, which have no
transfer, with the KD students of that divergence.
"""

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lskd.checks import DIVERGENCES
from lskd.errors import DataError, InvalidConfig
from lskd_grid.runs import RunManifest, find_runs

TEACHER = "teacher"
STUDENT = "student"


def number_key(value: Optional[float]) -> str:
    """α and T as the tables and the paper's JSON spell them: ``1`` for 1.0, ``0.1``, ``0.05``; ``-`` for none."""
    if value is None:
        return "-"
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) >= 1 else repr(value)


@dataclass(frozen=True)
class Row:
    """A table row: the teacher (kd_mode and temperature None), or a student of one KD mode at one T
    (temperature None for pure sequence-level KD)."""

    role: str
    kd_mode: Optional[str] = None
    temperature: Optional[float] = None

    @property
    def label(self) -> str:
        return "Teacher" if self.role == TEACHER else "Student"

    @property
    def t_label(self) -> str:
        return number_key(self.temperature)

    def sort_key(self) -> tuple:
        """Teacher first, then KD mode, then T (pure seq-KD, without one, first)."""
        return self.role != TEACHER, self.kd_mode or "", -1.0 if self.temperature is None else self.temperature


TEACHER_ROW = Row(TEACHER)


def sorted_cells(cells: dict) -> list[tuple]:
    """((Row, α), value) pairs in table order."""
    return sorted(cells.items(), key=lambda item: (item[0][0].sort_key(), item[0][1]))


@dataclass(frozen=True)
class MissingRun:
    run: str
    seed: int
    reason: str


@dataclass
class Cell:
    """The seeds of one (row, α), keyed by seed, and the runs of that cell that have no usable score."""

    values: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return statistics.mean(self.values.values()) if self.values else None

    @property
    def sd(self) -> Optional[float]:
        """Sample standard deviation (n - 1); None below two seeds, where there is no noise estimate."""
        return statistics.stdev(self.values.values()) if self.n >= 2 else None


@dataclass
class Grid:
    """Every cell of a grid folder, with the α values, KD modes and temperatures its manifests name."""

    folder: Path
    metric: str
    cells: dict = field(default_factory=dict)  # (Row, alpha) -> Cell
    alphas: set = field(default_factory=set)
    modes: dict = field(default_factory=dict)  # kd_mode -> set of temperatures (None for pure seq-KD)
    runs: list = field(default_factory=list)  # (run folder, RunManifest) as find_runs gives them
    transfer: Optional[str] = None  # the divergence of its KD students, when the folder holds several

    @property
    def max_seeds(self) -> int:
        return max((cell.n for cell in self.cells.values()), default=0)

    def cell(self, row: Row, alpha: float) -> Cell:
        return self.cells.get((row, alpha), Cell())

    def fewer_seeds(self, row: Row, alpha: float) -> bool:
        """A cell with some seeds but fewer than the grid's best-covered cell."""
        return 0 < self.cell(row, alpha).n < self.max_seeds

    def sorted_cells(self) -> list[tuple]:
        return sorted_cells(self.cells)

    def missing_runs(self) -> list[MissingRun]:
        return sorted((m for cell in self.cells.values() for m in cell.missing), key=lambda m: m.run)

    def student_rows(self, kd_mode: str) -> list[Row]:
        temperatures = self.modes.get(kd_mode, set())
        return sorted((Row(STUDENT, kd_mode, t) for t in temperatures), key=Row.sort_key)

    def empty_cells(self) -> list[tuple[Row, float]]:
        """Cells of the grid's own α × row product that no run reached (no manifest or no score)."""
        rows = [TEACHER_ROW] + [row for mode in sorted(self.modes) for row in self.student_rows(mode)]
        return [(row, alpha) for row in rows for alpha in sorted(self.alphas) if self.cell(row, alpha).n == 0]


def lookup(document, dotted_key: str) -> float:
    """The number at ``dotted_key`` (``best.top1``); KeyError saying where the path stopped and what was there."""
    value = document
    for part in dotted_key.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = ", ".join(value) if isinstance(value, dict) else type(value).__name__
            raise KeyError(f"no key {dotted_key!r} (stopped at {part!r}; available: {keys})")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise KeyError(f"{dotted_key!r} is {value!r}, expected a finite number")
    return float(value)


def row_of(manifest: RunManifest) -> Row:
    if manifest.kind == TEACHER:
        return TEACHER_ROW
    return Row(STUDENT, manifest.kd_mode, manifest.temperature)


def read_document(path: Path) -> tuple[Optional[object], str]:
    """(the metrics file's JSON, "") or (None, why it cannot be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, f"{path.name}: no such file"
    except (OSError, ValueError) as error:
        return None, f"{path.name}: unreadable ({error})"


def transfers_of(folder) -> list[str]:
    """The divergences of the KD students in ``folder``, in ``lskd.checks.DIVERGENCES`` order."""
    found = {manifest.transfer for _, manifest in find_runs(folder)} - {None}
    return [d for d in DIVERGENCES if d in found]


def of_transfer(manifest: RunManifest, transfer: Optional[str]) -> bool:
    """Whether a run belongs to the table of ``transfer`` (None: every run)."""
    return transfer is None or manifest.transfer in (None, transfer)


def collect(folder, metric: str, metrics_file: Optional[str] = None, transfer: Optional[str] = None) -> Grid:
    """Read every run of ``folder`` from its manifest; ``metrics_file`` overrides each manifest's file name;
    ``transfer``: only the runs of that divergence's table (``of_transfer``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected a grid folder of runs, each with a run.json)")
    runs = find_runs(folder)
    if not runs:
        raise DataError(
            f"{folder}: no run manifests (expected run folders {folder}/*/run.json, written by the recipes)"
        )
    runs = [(run_dir, manifest) for run_dir, manifest in runs if of_transfer(manifest, transfer)]
    if not metric.strip() or any(not part for part in metric.split(".")):
        raise InvalidConfig(f"--metric {metric!r}: expected a dotted key such as best.top1 or sacrebleu.score")
    grid = Grid(folder, metric, runs=runs, transfer=transfer)
    owners: dict = {}
    key_errors = []
    for run_dir, manifest in runs:
        row = row_of(manifest)
        grid.alphas.add(manifest.alpha)
        if row.role == STUDENT:
            grid.modes.setdefault(row.kd_mode, set()).add(row.temperature)
        slot = (row, manifest.alpha, manifest.seed)
        if slot in owners:
            raise DataError(
                f"{run_dir.name} and {owners[slot]} are both {row.label.lower()} "
                f"α {number_key(manifest.alpha)}, T {row.t_label}, KD mode {row.kd_mode or '-'}, "
                f"seed {manifest.seed}: expected one run per cell and seed (or per divergence, split by transfer)"
            )
        owners[slot] = run_dir.name
        cell = grid.cells.setdefault((row, manifest.alpha), Cell())
        path = run_dir / (metrics_file or manifest.metrics)
        document, reason = read_document(path)
        if document is not None:
            try:
                cell.values[manifest.seed] = lookup(document, metric)
                continue
            except KeyError as error:
                reason = f"{path.name}: {error.args[0]}"
                key_errors.append(f"{run_dir.name}/{reason}")
        cell.missing.append(MissingRun(run_dir.name, manifest.seed, reason))
    if key_errors and grid.max_seeds == 0:
        raise InvalidConfig(f"--metric {metric!r} is in no run's metrics file; e.g. {key_errors[0]}")
    return grid


# (label, split, pair, field) of the diffusion measures plotted against T; penultimate space.
DIFFUSION_MEASURES = (
    ("η similar (train)", "train", "similar", "anisotropy"),
    ("separation (train)", "train", "similar", "separation"),
    ("η control (train)", "train", "control", "anisotropy"),
    ("η similar (valid)", "valid", "similar", "anisotropy"),
    ("separation (valid)", "valid", "similar", "separation"),
    ("η control (valid)", "valid", "control", "anisotropy"),
)
DIFFUSION_SPACE = "penultimate"


def diffusion_reports(folder: Path) -> list[Path]:
    """The grid's diffusion reports, as ``lskd_vision.cli visualize`` writes them: ``diffusion*.json`` in the
    grid folder or one level down (the recipes write one per seed, ``diffusion-s1/diffusion.json``)."""
    folder = Path(folder)
    return sorted({*folder.glob("diffusion*.json"), *folder.glob("diffusion*/diffusion*.json")})


def run_of_checkpoint(checkpoint: str, runs: list) -> Optional[tuple[Path, RunManifest]]:
    """The grid run whose folder holds ``checkpoint``: the same folder, or (for a path recorded relative to
    another working directory) the run folder of the same name."""
    parent = Path(checkpoint).parent
    for run_dir, manifest in runs:
        if parent.resolve() == run_dir.resolve():
            return run_dir, manifest
    return next(((d, m) for d, m in runs if d.name == parent.name), None)


def collect_diffusion(grid: Grid, reports: list[Path]) -> tuple[dict, list[str]]:
    """Per measure label, the (Row, α) cells of the models in ``reports`` (seeds from their runs' manifests),
    and the names of models whose checkpoint is no run of the grid."""
    measures = {label: {} for label, *_ in DIFFUSION_MEASURES}
    unmatched = []
    for path in reports:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            models, checkpoints = report["models"], report["inputs"]["checkpoints"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"{path}: expected a diffusion report with models and inputs.checkpoints ({error!r})"
            ) from None
        for name, model in models.items():
            found = run_of_checkpoint(checkpoints.get(name, {}).get("path", ""), grid.runs)
            if found is None:
                other = run_of_checkpoint(checkpoints.get(name, {}).get("path", ""), find_runs(grid.folder))
                if grid.transfer is None or other is None:
                    unmatched.append(f"{path.relative_to(grid.folder)}: {name}")
                continue
            manifest = found[1]
            for label, split, pair, key in DIFFUSION_MEASURES:
                value = model.get(split, {}).get(DIFFUSION_SPACE, {}).get(pair, {}).get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    cell = measures[label].setdefault((row_of(manifest), manifest.alpha), Cell())
                    cell.values[manifest.seed] = float(value)
    return measures, unmatched
