"""lskd-results on synthetic grids, and the stored paper numbers against the reference digest."""
import contextlib
import csv
import io
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import PYTHON
from lskd_report.paper_results import paper_tables
from lskd_report.results import main

PAPER_MD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paper.md"
ALPHAS, TEMPERATURES = ("0.0", "0.1"), ("1", "2", "3", "64")


@dataclass
class Outcome:
    returncode: int
    stderr: str


def results(*args):
    """``lskd-results`` in-process (the console script is checked once, in a subprocess, below)."""
    stderr, code = io.StringIO(), 0
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
            if isinstance(exit_.code, str):
                stderr.write(exit_.code)
    return Outcome(code, stderr.getvalue())


def test_console_script_prints_the_markdown_table(vision_grid, tmp_path):
    grid, _ = vision_grid
    result = subprocess.run([str(PYTHON.parent / "lskd-results"), str(grid), "--paper", "cub-r18",
                             "--metric", "best.top1", "--out", str(tmp_path / "t")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (tmp_path / "t.md").read_text(encoding="utf-8")


def write_run(grid: Path, name: str, filename: str, document: dict) -> None:
    (grid / name).mkdir(parents=True)
    (grid / name / filename).write_text(json.dumps(document))


def vision_metrics(top1: float) -> dict:
    return {"final": {"top1": top1 - 1, "top5": top1 + 10}, "best": {"top1": top1, "top5": top1 + 11}}


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def vision_grid(tmp_path):
    grid = tmp_path / "grid"
    expected = {}
    for n, alpha in enumerate(ALPHAS):
        write_run(grid, f"teacher-a{alpha}", "metrics.json", vision_metrics(70 + n))
        expected[("teacher", alpha)] = 70 + n
        for m, temperature in enumerate(TEMPERATURES):
            if (alpha, temperature) == ("0.1", "64"):
                continue  # a missing run
            write_run(grid, f"student-a{alpha}-T{temperature}", "metrics.json", vision_metrics(60 + 10 * n + m))
            expected[(temperature, alpha)] = 60 + 10 * n + m
    (grid / "logs").mkdir()
    return grid, expected


def test_vision_grid_against_the_paper_table(vision_grid, tmp_path):
    grid, expected = vision_grid
    result = results(grid, "--paper", "cub-r18", "--metric", "best.top1", "--out", tmp_path / "table")
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "table.csv")
    paper = paper_tables()["cub-r18"]
    assert [(r["role"], r["T"]) for r in rows] == [("Teacher", "-")] + [("Student", t) for t in TEMPERATURES]
    for row in rows:
        key = "teacher" if row["role"] == "Teacher" else row["T"]
        for alpha in ALPHAS:
            ours = expected.get((key, alpha))
            assert row[f"α = {alpha}"] == ("" if ours is None else f"{ours:.3f}")
            published = paper["teacher"][alpha] if key == "teacher" else paper["student"][key][alpha]
            assert float(row[f"paper α = {alpha}"]) == pytest.approx(published["top1"])
    markdown = (tmp_path / "table.md").read_text(encoding="utf-8")
    student_64 = next(line for line in markdown.splitlines() if line.startswith("| Student | 64 |"))
    assert student_64.split("|")[5].strip() == "—"  # α = 0.1 ours
    assert "Table 2" in markdown and "best.top1" in markdown


def test_top5_column_is_chosen_from_the_metric_key(vision_grid, tmp_path):
    grid, _ = vision_grid
    assert results(grid, "--paper", "imagenet-r50", "--metric", "final.top5", "--out", tmp_path / "t").returncode == 0
    teacher = read_csv(tmp_path / "t.csv")[0]
    assert float(teacher["paper α = 0.1"]) == paper_tables()["imagenet-r50"]["teacher"]["0.1"]["top5"]
    assert float(teacher["α = 0.0"]) == 80.0  # final.top5 of the α=0.0 teacher: 70 + 10


def test_nmt_grid_reads_bleu_json(tmp_path):
    grid = tmp_path / "grid"
    write_run(grid, "teacher-a0.1", "bleu.json", {"sacrebleu": {"score": 25.5}, "tokenized_bleu": {"score": 27.25}})
    write_run(grid, "student-a0.1-T1.0", "bleu.json", {"sacrebleu": {"score": 24.0}, "tokenized_bleu": {"score": 26.0}})
    result = results(grid, "--paper", "iwslt-en-de", "--metric", "tokenized_bleu.score", "--out", tmp_path / "bleu")
    assert result.returncode == 0, result.stderr
    rows = {(r["role"], r["T"]): r for r in read_csv(tmp_path / "bleu.csv")}
    assert rows[("Teacher", "-")]["α = 0.1"] == "27.250" and rows[("Teacher", "-")]["α = 0.0"] == ""
    assert rows[("Student", "1")]["α = 0.1"] == "26.000"
    paper = paper_tables()["iwslt-en-de"]["student"]["64"]["0.0"]["bleu"]
    assert float(rows[("Student", "64")]["paper α = 0.0"]) == paper


def test_grid_without_a_paper_counterpart(tmp_path):
    grid = tmp_path / "grid"
    write_run(grid, "teacher-a0.0", "bleu.json", {"sacrebleu": {"score": 10.0}})
    write_run(grid, "student-a0.0-T1.5", "bleu.json", {"sacrebleu": {"score": 9.0}})
    result = results(grid, "--paper", "none", "--metric", "sacrebleu.score", "--out", tmp_path / "toy")
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "toy.csv")
    assert list(rows[0]) == ["role", "T", "α = 0.0"]
    assert [(r["T"], r["α = 0.0"]) for r in rows] == [("-", "10.000"), ("1.5", "9.000")]


def test_unknown_metric_key_names_the_file_and_what_it_has(vision_grid, tmp_path):
    grid, _ = vision_grid
    result = results(grid, "--paper", "cub-r18", "--metric", "best.acc1", "--out", tmp_path / "t")
    assert result.returncode != 0 and "best.acc1" in result.stderr and "top1" in result.stderr
    assert not (tmp_path / "t.md").exists()


def test_ambiguous_paper_column_asks_for_paper_metric(vision_grid, tmp_path):
    grid, _ = vision_grid
    result = results(grid, "--paper", "cub-r18", "--metric", "best.top1", "--paper-metric", "bleu",
                     "--out", tmp_path / "t")
    assert result.returncode != 0 and "top1, top5" in result.stderr


def test_unknown_paper_table_lists_the_known_ones(vision_grid, tmp_path):
    grid, _ = vision_grid
    result = results(grid, "--paper", "cifar", "--metric", "best.top1", "--out", tmp_path / "t")
    assert result.returncode != 0 and "imagenet-r18" in result.stderr and "iwslt-en-ru" in result.stderr


def digest_tables() -> dict:
    """Every teacher/student row of paper.md §2.1-2.6, parsed from the Markdown independently of the JSON."""
    text = PAPER_MD.read_text(encoding="utf-8").split("## 2. Results tables")[1].split("### 2.7")[0]
    rows = re.findall(r"^\| (?:[^|]*?)(Teacher|Student)[^|]*\| ([^|]*)\| ([^|]*)\| ([^|]*)\|$", text, re.M)
    return rows


def test_stored_numbers_are_the_digest_tables():
    rows = digest_tables()
    order = ["imagenet-r18", "imagenet-r50", "cub-r18", "cub-r50", "cub-mnv2", "iwslt-en-de", "iwslt-en-ru"]
    tables = paper_tables()
    assert list(tables) == order and len(rows) == 5 * len(order)
    for index, (role, temperature, alpha0, alpha1) in enumerate(rows):
        table = tables[order[index // 5]]
        cells = table["teacher"] if role == "Teacher" else table["student"][temperature.split("=")[1].strip()]
        for alpha, text in (("0.0", alpha0), ("0.1", alpha1)):
            numbers = [float(x) for x in text.split("/")]
            assert [cells[alpha][m] for m in table["metrics"]] == numbers
    assert all(re.search(r"Table \d", t["source"]) and "§2." in t["source"] for t in tables.values())
