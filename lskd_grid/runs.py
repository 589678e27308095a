"""The manifest every recipe run writes (``run.json``), and how a grid folder's runs are found from it.

A run folder says what it is (teacher or student, its alpha, temperature, seed, KD mode, teacher run, metrics
file and, for a student whose transfer is not the default forward KL, its divergence and transfer options) in
``run.json``, written before the run trains; ``lskd-results`` reads grids from these
manifests, never from folder names. A manifest whose metrics file is absent is a missing (unfinished or
failed) run, which the tables show as missing.

``python -m lskd_grid.runs record RUN_DIR --kind student --alpha 0.1 --temperature 2 --seed 1 ...``
writes one from a recipe.
"""

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from lskd.checks import DIVERGENCES, check_choice, check_smoothing, check_temperature
from lskd.errors import DataError, InvalidConfig
from lskd_tools.cli import ArgumentParser, add_options, config_from, console_script, option
from lskd_tools.files import atomic_write_json

MANIFEST = "run.json"
KINDS = ("teacher", "student")
KD_MODES = ("word", "seq", "seq+word")
DEFAULT_DIVERGENCE = "kl"
# Written only when set, so a default forward-KL run's run.json is what it has always been.
TRANSFER_FIELDS = ("divergence", "transfer_options")


def optional_float(text: str) -> Optional[float]:
    """A number, or ``''``/``none`` for no value (what a bash recipe passes for a teacher)."""
    return None if text in ("", "none") else float(text)


@dataclass(frozen=True)
class RunManifest:
    """One run of a grid. ``temperature`` is None for teachers and pure sequence-level students;
    ``teacher`` is the teacher run's folder name (students only); ``metrics`` is the file, inside the run
    folder, holding the scores (``bleu.json`` or ``metrics.json``)."""

    kind: str = option(choices=KINDS, help="what the run trains")
    alpha: float = option(help="label smoothing alpha (a student's: of its teacher)")
    seed: int = option(1, help="training seed")
    temperature: Optional[float] = option(
        None, type=optional_float, default_text="none: teachers, seq-KD students", help="KD temperature"
    )
    kd_mode: Optional[str] = option(None, choices=KD_MODES, default_text="none: teachers", help="KD mode of a student")
    teacher: Optional[str] = option(None, default_text="none: teachers", help="the teacher run's folder name")
    metrics: str = option("metrics.json", help="scores file inside the run folder")
    divergence: Optional[str] = option(
        None,
        choices=DIVERGENCES,
        default_text="none: kl for a KD student, none for teachers and seq-KD students",
        help="the student's KD divergence",
    )
    transfer_options: Optional[str] = option(
        None,
        default_text="none: the defaults",
        help="the recipe's transfer settings that differ from their defaults, e.g. 'LOGIT_STANDARDIZATION=1'",
    )

    @property
    def transfer(self) -> Optional[str]:
        """The divergence a KD student's term uses (the default forward KL when none is recorded); None for
        teachers and pure sequence-level students, which have no KD term."""
        if self.kind != "student" or self.kd_mode == "seq":
            return None
        return self.divergence or DEFAULT_DIVERGENCE

    def __post_init__(self):
        check_choice("run kind", self.kind, KINDS)
        check_smoothing(self.alpha)
        if self.temperature is not None:
            check_temperature(self.temperature)
        if self.kind == "student":
            check_choice("student KD mode", self.kd_mode, KD_MODES)
        if self.kind == "student" and self.kd_mode != "seq" and self.temperature is None:
            raise InvalidConfig(f"a {self.kd_mode} KD student needs a temperature")
        if self.kind == "teacher" and (self.temperature, self.kd_mode, self.teacher) != (None, None, None):
            raise InvalidConfig("a teacher run has no temperature, KD mode or teacher")
        if self.divergence is not None:
            check_choice("divergence", self.divergence, DIVERGENCES)
        if (self.divergence, self.transfer_options) != (None, None) and self.transfer is None:
            raise InvalidConfig("a teacher or seq-KD student run has no divergence or transfer options")


def write_manifest(run_dir, manifest: RunManifest) -> Path:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / MANIFEST
    document = {k: v for k, v in asdict(manifest).items() if k not in TRANSFER_FIELDS or v is not None}
    atomic_write_json(path, document)
    return path


def read_manifest(run_dir) -> RunManifest:
    path = Path(run_dir) / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the run manifest ({error})") from None
    known = {f.name for f in fields(RunManifest)}
    if not isinstance(document, dict) or not {"kind", "alpha"} <= document.keys() or document.keys() - known:
        raise DataError(f"{path}: expected a JSON object with keys kind, alpha and only {', '.join(sorted(known))}")
    try:
        return RunManifest(**document)
    except InvalidConfig as error:
        raise DataError(f"{path}: {error}") from None


def find_runs(grid_dir) -> list[tuple[Path, RunManifest]]:
    """Every run folder directly inside ``grid_dir`` that has a manifest, sorted by folder name."""
    return [(path.parent, read_manifest(path.parent)) for path in sorted(Path(grid_dir).glob(f"*/{MANIFEST}"))]


@console_script("python -m lskd_grid.runs")
def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m lskd_grid.runs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="write RUN_DIR/run.json")
    record.add_argument("run_dir", type=Path, help="the run folder")
    add_options(record, RunManifest)
    args = parser.parse_args(argv)
    write_manifest(args.run_dir, config_from(RunManifest, args))


if __name__ == "__main__":
    main()
