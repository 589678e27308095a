"""``lskd-results``: collect a teacher/student grid of runs into the paper's α × T table (Markdown + CSV).

A grid folder holds ``teacher-a<α>/`` and ``student-a<α>-T<T>/`` run folders (α with one decimal, e.g.
``teacher-a0.1``, ``student-a0.0-T64``), each with a metrics file: ``metrics.json`` (vision) or
``bleu.json`` (``lskd-evaluate``). The value shown is the dotted key path ``--metric`` inside that file;
the paper's published number for the same cell is shown beside it.
"""
import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lskd.errors import DataError, InvalidConfig
from lskd_report.paper_results import paper_table, paper_tables
from lskd_tools.cli import console_script, option, parse_config

METRICS_FILES = ("metrics.json", "bleu.json")
NUMBER = r"\d+(?:\.\d+)?"
TEACHER_RUN = re.compile(rf"^teacher-a(?P<alpha>{NUMBER})$")
STUDENT_RUN = re.compile(rf"^student-a(?P<alpha>{NUMBER})-T(?P<temperature>{NUMBER})$")
MISSING = "—"
TEACHER = "teacher"


def alpha_key(value: str) -> str:
    return f"{float(value):.1f}"


def temperature_key(value: str) -> str:
    """``1``, ``1.0`` and ``01`` are the same temperature; integers print without a decimal point."""
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def lookup(document: dict, dotted_key: str, source: Path) -> float:
    value = document
    for part in dotted_key.split("."):
        if not isinstance(value, dict) or part not in value:
            keys = ", ".join(value) if isinstance(value, dict) else type(value).__name__
            raise DataError(f"{source}: no key {dotted_key!r} (stopped at {part!r}; available: {keys})")
        value = value[part]
    if not isinstance(value, (int, float)):
        raise DataError(f"{source}: {dotted_key!r} is {value!r}, expected a number")
    return float(value)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


@dataclass
class Grid:
    """Cell values keyed by (row, α): row is ``teacher`` or a temperature key."""

    values: dict = field(default_factory=dict)
    alphas: set = field(default_factory=set)
    temperatures: set = field(default_factory=set)


def metrics_file_of(run: Path, name: Optional[str]) -> Optional[Path]:
    candidates = [name] if name else METRICS_FILES
    return next((run / c for c in candidates if (run / c).is_file()), None)


def collect_runs(run_dir: Path, metric: str, metrics_file: Optional[str] = None) -> Grid:
    grid = Grid()
    for run in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        teacher, student = TEACHER_RUN.match(run.name), STUDENT_RUN.match(run.name)
        if not (teacher or student):
            continue
        alpha = alpha_key((teacher or student)["alpha"])
        row = TEACHER if teacher else temperature_key(student["temperature"])
        grid.alphas.add(alpha)
        if student:
            grid.temperatures.add(row)
        path = metrics_file_of(run, metrics_file)
        if path is not None:
            grid.values[(row, alpha)] = lookup(read_json(path), metric, path)
    return grid


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
        raise InvalidConfig(f"--metric {metric!r}: cannot tell which of {', '.join(table['metrics'])} it is; "
                       "pass --paper-metric")
    return last


def paper_values(table: dict, paper_metric: str) -> dict:
    values = {(TEACHER, alpha): cell[paper_metric] for alpha, cell in table["teacher"].items()}
    for temperature, row in table["student"].items():
        values.update({(temperature, alpha): cell[paper_metric] for alpha, cell in row.items()})
    return values


@dataclass
class Table:
    title: str
    caption: str
    alphas: list
    rows: list  # TEACHER first, then temperatures in increasing order
    ours: dict
    paper: Optional[dict]

    def header(self) -> list[str]:
        columns = ["", "T"]
        for alpha in self.alphas:
            columns.append(f"α = {alpha}")
            if self.paper is not None:
                columns.append(f"paper α = {alpha}")
        return columns

    def body(self, missing: str) -> list[list[str]]:
        def show(value):
            return missing if value is None else f"{value:.3f}"

        lines = []
        for row in self.rows:
            cells = ["Teacher", "-"] if row == TEACHER else ["Student", row]
            for alpha in self.alphas:
                cells.append(show(self.ours.get((row, alpha))))
                if self.paper is not None:
                    cells.append(show(self.paper.get((row, alpha))))
            lines.append(cells)
        return lines

    def markdown(self) -> str:
        header = self.header()
        lines = [f"## {self.title}", "", self.caption, "", "| " + " | ".join(header) + " |",
                 "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in self.body(MISSING)]
        return "\n".join(lines) + "\n"

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["role", "T"] + self.header()[2:])
            writer.writerows(self.body(""))


def build_table(run_dir: Path, metric: str, paper_id: str, metrics_file: Optional[str] = None,
                paper_metric: Optional[str] = None) -> Table:
    grid = collect_runs(run_dir, metric, metrics_file)
    paper, title = None, f"Results of {run_dir}"
    caption = f"Ours: `{metric}` from each run's {metrics_file or ' or '.join(METRICS_FILES)}; {MISSING}: run missing."
    alphas, temperatures = set(grid.alphas), set(grid.temperatures)
    if paper_id != "none":
        table = paper_table(paper_id)
        column = paper_metric_for(table, metric, paper_metric)
        paper = paper_values(table, column)
        alphas |= set(table["teacher"])
        temperatures |= set(table["student"])
        title = f"{table['title']} ({paper_id})"
        caption += f" Paper: `{column}`, {table['source']}." + (f" {table['note']}" if "note" in table else "")
    rows = [TEACHER] + sorted(temperatures, key=float)
    return Table(title, caption, sorted(alphas, key=float), rows, grid.values, paper)


@dataclass
class ResultsConfig:
    run_dir: Path = option(positional=True, help="grid folder with teacher-a*/ and student-a*-T*/ runs")
    paper: str = option(help=f"paper table id ({', '.join(paper_tables())}) or none")
    metric: str = option(help="dotted key in the metrics file, e.g. best.top1, sacrebleu.score")
    out: Path = option(help="output prefix: writes PREFIX.md and PREFIX.csv")
    metrics_file: Optional[str] = option(None, default_text=f"first of {', '.join(METRICS_FILES)}",
                                         help="metrics file name in each run")
    paper_metric: Optional[str] = option(None, default_text="inferred from --metric",
                                         help="paper column to compare with")


@console_script("lskd-results")
def main(argv=None) -> None:
    args = parse_config(ResultsConfig, argv, prog="lskd-results", description=__doc__.splitlines()[0])
    if not args.run_dir.is_dir():
        raise InvalidConfig(f"{args.run_dir}: no such folder (expected a grid of teacher-a*/ and student-a*-T*/ runs)")
    table = build_table(args.run_dir, args.metric, args.paper, args.metrics_file, args.paper_metric)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    markdown = table.markdown()
    Path(f"{args.out}.md").write_text(markdown, encoding="utf-8")
    table.write_csv(Path(f"{args.out}.csv"))
    print(markdown, end="")


if __name__ == "__main__":
    main()
