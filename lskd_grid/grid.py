"""The runs of a recipe's grid: teachers per α and seed, students per teacher, temperature, KD mode and transfer.

A recipe asks for its plan once, before anything is written; the values are validated here (through
``lskd.checks``), never in bash. Each planned run has a folder name that carries every coordinate
(``teacher-a0.1-s1``, ``student-a0.1-T2-word-s1``, ``student-a0.05-seq-s2``) and the manifest it records
when it starts (``lskd_grid.runs``). A student of seed s distils from the teacher of seed s. The transfer
(``DIVERGENCES``) is an axis of the word-level students only (a seq-KD student has no KD term): a student of a
divergence other than the default ``kl`` carries it before its seed (``student-a0.1-T2-word-reverse_kl-s1``),
so a forward-KL grid is named as it always was.

``python -m lskd_grid.grid plan --alphas "0.0 0.1" --temperatures "1 2" --seeds "1 2" --kd-modes "word seq"``
prints one line per run: folder, kind, α, T, seed, KD mode, teacher folder (``-`` where none), then the
divergence for a student of a divergence other than ``kl`` (``--divergences "kl reverse_kl"``).
"""

from dataclasses import dataclass
from typing import Optional

from lskd.checks import DIVERGENCES, check_smoothing, check_temperature, members, numbers, seeds
from lskd_grid.runs import DEFAULT_DIVERGENCE, KD_MODES, RunManifest
from lskd_tools.cli import ArgumentParser, add_options, config_from, console_script, option

PROG = "python -m lskd_grid.grid"
NONE = "-"


def number_name(value: float) -> str:
    """How a number appears in a folder name: integers without a point (T2), else the shortest form (a0.05)."""
    return str(int(value)) if value.is_integer() else repr(value)


def alpha_name(value: float) -> str:
    """α keeps at least one decimal (a0.0, a0.1, a0.05), as the grids have always been named."""
    return repr(value)


def divergence_suffix(divergence: Optional[str]) -> str:
    """What a student's folder name carries of its divergence: nothing for the default forward KL."""
    return "" if divergence in (None, DEFAULT_DIVERGENCE) else f"-{divergence}"


@dataclass(frozen=True)
class PlannedRun:
    name: str
    manifest: RunManifest

    def row(self) -> str:
        m = self.manifest
        fields = [
            self.name,
            m.kind,
            alpha_name(m.alpha),
            NONE if m.temperature is None else number_name(m.temperature),
            str(m.seed),
            m.kd_mode or NONE,
            m.teacher or NONE,
        ]
        if m.divergence is not None:
            fields.append(m.divergence)
        return " ".join(fields)


@dataclass(frozen=True)
class Grid:
    """The α × T × seed × KD-mode × divergence grid of one recipe, from the recipe's settings text.
    ``transfer_options``: (divergence, the recipe's other transfer settings that differ from their defaults and
    that divergence reads), recorded in each KD student's manifest (``lskd_grid.transfers``)."""

    alphas: tuple[float, ...]
    temperatures: tuple[float, ...]
    seeds: tuple[int, ...]
    kd_modes: tuple[str, ...] = ("word",)
    divergences: tuple[str, ...] = (DEFAULT_DIVERGENCE,)
    transfer_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls,
        alphas: str,
        temperatures: str,
        seeds_text: str,
        modes: str = "word",
        divergence_text: str = DEFAULT_DIVERGENCE,
    ) -> "Grid":
        return cls(
            numbers("ALPHAS", alphas, check_smoothing, "a label smoothing in [0, 1) such as 0.1"),
            numbers("TEMPERATURES", temperatures, check_temperature, "a temperature > 0 such as 2 or 1.5"),
            seeds("SEEDS", seeds_text),
            members("KD_MODES", modes, KD_MODES),
            members("DIVERGENCES", divergence_text, DIVERGENCES),
        )

    def teachers(self, metrics: str) -> list[PlannedRun]:
        return [
            PlannedRun(f"teacher-a{alpha_name(a)}-s{s}", RunManifest("teacher", a, seed=s, metrics=metrics))
            for s in self.seeds
            for a in self.alphas
        ]

    def students(self, teacher: PlannedRun, metrics: str) -> list[PlannedRun]:
        a, s = teacher.manifest.alpha, teacher.manifest.seed
        runs = []
        for mode in self.kd_modes:
            for t in (None,) if mode == "seq" else self.temperatures:
                at = "" if t is None else f"-T{number_name(t)}"
                for divergence in (None,) if mode == "seq" else self.divergences:
                    recorded = None if divergence == DEFAULT_DIVERGENCE else divergence
                    manifest = RunManifest(
                        "student",
                        a,
                        seed=s,
                        temperature=t,
                        kd_mode=mode,
                        teacher=teacher.name,
                        metrics=metrics,
                        divergence=recorded,
                        transfer_options=dict(self.transfer_options).get(divergence) or None,
                    )
                    name = f"student-a{alpha_name(a)}{at}-{mode}{divergence_suffix(divergence)}-s{s}"
                    runs.append(PlannedRun(name, manifest))
        return runs

    def plan(self, metrics: str = "metrics.json") -> list[PlannedRun]:
        """Every run, each teacher followed by its students (the order one lane runs them in)."""
        runs = []
        for teacher in self.teachers(metrics):
            runs += [teacher, *self.students(teacher, metrics)]
        return runs


def plan_rows(grid: Grid, metrics: str = "metrics.json", kind: Optional[str] = None) -> list[str]:
    return [run.row() for run in grid.plan(metrics) if kind in (None, run.manifest.kind)]


@dataclass(frozen=True)
class PlanOptions:
    """``plan``'s flags: a grid's axes, written as the recipes' settings of the same names (``ALPHAS``...)."""

    alphas: str = option(help="teacher label smoothing values, space-separated")
    temperatures: str = option(help="student temperatures, space-separated")
    seeds: str = option("1", help="training seeds, space-separated")
    kd_modes: str = option("word", help=f"student kinds, any of {' '.join(KD_MODES)}")
    divergences: str = option(DEFAULT_DIVERGENCE, help="the students' KD divergences, any of " + " ".join(DIVERGENCES))
    metrics: str = option("metrics.json", help="scores file of each run (bleu.json for NMT)")


@console_script(PROG)
def main(argv=None) -> None:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_options(commands.add_parser("plan", help="validate a grid and print its runs, one line each"), PlanOptions)
    args = config_from(PlanOptions, parser.parse_args(argv))
    grid = Grid.parse(args.alphas, args.temperatures, args.seeds, args.kd_modes, args.divergences)
    print("\n".join(plan_rows(grid, args.metrics)))


if __name__ == "__main__":
    main()
