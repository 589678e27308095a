"""lskd-results on hand-made grids of run folders (run.json + metrics file), checked against numbers computed
here with ``statistics``; the stored paper numbers against the reference digest."""

import csv
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats

from lskd_report.paper_results import paper_tables
from results_runs import Outcome, add_run, results

DIGEST_ENV = "LSKD_PAPER_DIGEST"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_grid(grid: Path, cells: dict, teachers=None) -> Path:
    """``cells``: (α, T) -> one value per seed (None: a run without a score); teachers (α -> values) too."""
    for alpha, values in (teachers or {0.0: [90.0], 0.1: [91.0]}).items():
        for seed, value in enumerate(values, 1):
            add_run(grid, alpha, None, seed, value)
    for (alpha, temperature), values in cells.items():
        for seed, value in enumerate(values, 1):
            add_run(grid, alpha, temperature, seed, value)
    return grid


def read_csv(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return {(row["role"], row["T"]): row for row in csv.DictReader(handle)}


def run_ok(grid, out, *extra, paper="none", metric="best.top1") -> dict:
    outcome = results(grid, "--paper", paper, "--metric", metric, "--out", out, *extra)
    assert outcome.returncode == 0, outcome.stderr
    assert outcome.stdout == Path(f"{out}.md").read_text(encoding="utf-8")
    return json.loads(Path(f"{out}-verdicts.json").read_text(encoding="utf-8"))


# ---- aggregation ----------------------------------------------------------------------------------

SEEDED = {
    (0.0, 1): [96.1, 95.3, 96.8],
    (0.0, 2): [95.0, 95.9, 94.2],
    (0.0, 64): [90.5, 91.25, 89.0],
    (0.1, 1): [98.0, 97.4, 98.9],
    (0.1, 2): [97.7, 96.0, 97.1],
    (0.1, 64): [85.5, 86.0, 84.9],
}


def test_mean_sd_and_n_per_cell_are_the_seeds_statistics(tmp_path):
    grid = make_grid(tmp_path / "grid", SEEDED, teachers={0.0: [99.0, 98.5, 99.25], 0.1: [99.5, 98.0, 99.0]})
    run_ok(grid, tmp_path / "out" / "r")
    rows = read_csv(tmp_path / "out" / "r.csv")
    markdown = (tmp_path / "out" / "r.md").read_text(encoding="utf-8")
    teachers = {0.0: [99.0, 98.5, 99.25], 0.1: [99.5, 98.0, 99.0]}
    expected = {("Teacher", "-", a): v for a, v in teachers.items()}
    expected.update({("Student", str(t), a): v for (a, t), v in SEEDED.items()})
    assert set(rows) == {("Teacher", "-"), ("Student", "1"), ("Student", "2"), ("Student", "64")}
    for (role, t, alpha), values in expected.items():
        row, column = rows[(role, t)], f"α = {alpha}"
        mean, sd = statistics.mean(values), statistics.stdev(values)
        assert float(row[column]) == pytest.approx(mean, abs=5e-4)
        assert float(row[f"{column} sd"]) == pytest.approx(sd, abs=5e-4)
        assert (row[f"{column} n"], row[f"{column} missing"]) == ("3", "0")
        assert f"{mean:.3f} ± {sd:.3f} (3)" in markdown
    document = json.loads((tmp_path / "out" / "r.json").read_text(encoding="utf-8"))
    cell = next(c for c in document["cells"] if (c["role"], c["T"], c["alpha"]) == ("student", 64.0, 0.1))
    assert cell["seeds"] == {"1": 85.5, "2": 86.0, "3": 84.9} and cell["n"] == 3
    assert cell["mean"] == pytest.approx(statistics.mean(SEEDED[(0.1, 64)]))
    assert cell["sd"] == pytest.approx(statistics.stdev(SEEDED[(0.1, 64)]))
    assert document["max_seeds"] == 3 and document["seeds"] == [1, 2, 3] and document["missing_runs"] == []
    assert "†" not in markdown.split("|---|")[1].split("\n\n")[0]


def test_missing_and_unreadable_runs_are_listed_not_averaged(tmp_path):
    grid = make_grid(
        tmp_path / "grid",
        {
            (0.0, 1): [96.0, 95.0, 97.0],
            (0.1, 1): [98.0, 99.0, None],
            (0.0, 3): [94.0, 93.0, 95.0],
            (0.1, 3): [None, None, None],
        },
        teachers={0.0: [99.0, 98.0, 97.0], 0.1: [99.0, 98.0, 97.0]},
    )
    broken = add_run(grid, 0.0, 3, seed=4, text="{not json")
    run_ok(grid, tmp_path / "r")
    rows = read_csv(tmp_path / "r.csv")
    assert rows[("Student", "1")]["α = 0.1"] == f"{statistics.mean([98.0, 99.0]):.3f}"
    assert rows[("Student", "1")]["α = 0.1 sd"] == f"{statistics.stdev([98.0, 99.0]):.3f}"
    assert (rows[("Student", "1")]["α = 0.1 n"], rows[("Student", "1")]["α = 0.1 missing"]) == ("2", "1")
    assert rows[("Student", "3")]["α = 0.0"] == f"{statistics.mean([94.0, 93.0, 95.0]):.3f}"
    assert (rows[("Student", "3")]["α = 0.0 n"], rows[("Student", "3")]["α = 0.0 missing"]) == ("3", "1")
    assert (rows[("Student", "3")]["α = 0.1"], rows[("Student", "3")]["α = 0.1 n"]) == ("", "0")
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    table = {
        tuple(c.strip() for c in line.split("|")[1:3]): line.split("|")
        for line in markdown.splitlines()
        if line.startswith("| Student")
    }
    assert table[("Student", "1")][4].strip() == f"{statistics.mean([98.0, 99.0]):.3f} ± 0.707 (2)†"
    assert table[("Student", "3")][4].strip() == "—"
    assert "Missing runs (5" in markdown
    assert f"- {broken.name} (seed 4): metrics.json: unreadable" in markdown
    assert "- s-0.1-word-1-s3 (seed 3): metrics.json: no such file" in markdown
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert len(document["missing_runs"]) == 5
    assert {m["run"] for m in document["missing_runs"]} >= {broken.name, "s-0.1-word-1-s3"}
    cell = next(c for c in document["cells"] if (c["T"], c["alpha"]) == (1.0, 0.1))
    assert cell["fewer_seeds"] and cell["n"] == 2 and [m["seed"] for m in cell["missing"]] == [3]


def test_a_run_without_the_metric_key_is_missing_when_others_have_it(tmp_path):
    grid = make_grid(tmp_path / "grid", {(0.0, 1): [96.0, 95.0]})
    add_run(grid, 0.0, 1, seed=3, value=70.0, metric_path=("final", "top1"))
    run_ok(grid, tmp_path / "r")
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "s-0.0-word-1-s3 (seed 3): metrics.json: no key 'best.top1'" in markdown
    assert read_csv(tmp_path / "r.csv")[("Student", "1")]["α = 0.0"] == "95.500"


def test_alpha_and_temperature_are_not_limited_to_one_decimal(tmp_path):
    grid = tmp_path / "grid"
    add_run(grid, 0.05, None, value=80.0, metrics="bleu.json", metric_path=("sacrebleu", "score"))
    add_run(grid, 0.05, 1.5, value=70.0, metrics="bleu.json", metric_path=("sacrebleu", "score"))
    add_run(grid, 0.05, 0.75, value=71.0, metrics="bleu.json", metric_path=("sacrebleu", "score"))
    run_ok(grid, tmp_path / "r", metric="sacrebleu.score")
    rows = read_csv(tmp_path / "r.csv")
    assert list(rows) == [("Teacher", "-"), ("Student", "0.75"), ("Student", "1.5")]
    assert rows[("Student", "1.5")]["α = 0.05"] == "70.000" and rows[("Student", "0.75")]["α = 0.05"] == "71.000"


def test_kd_modes_side_by_side(tmp_path):
    grid = make_grid(tmp_path / "grid", {(0.1, 1): [80.0]}, teachers={0.1: [85.0]})
    add_run(grid, 0.1, 1, value=82.0, kd_mode="seq+word")
    add_run(grid, 0.1, None, value=81.0, kd_mode="seq")
    run_ok(grid, tmp_path / "r")
    rows = read_csv(tmp_path / "r.csv")
    assert list(rows) == [("Teacher", "-"), ("Student", "-"), ("Student", "1")]
    columns = ("α = 0.1 (word)", "α = 0.1 (seq)", "α = 0.1 (seq+word)")
    assert [rows[("Teacher", "-")][c] for c in columns] == ["85.000"] * 3
    assert [rows[("Student", "-")][c] for c in columns] == ["", "81.000", ""]
    assert [rows[("Student", "1")][c] for c in columns] == ["80.000", "", "82.000"]
    assert (tmp_path / "r-score-word.png").is_file() and (tmp_path / "r-score-seq-word.png").is_file()
    assert not (tmp_path / "r-score-seq.png").exists()


def test_paper_numbers_sit_beside_ours_and_their_rows_are_added(tmp_path):
    grid = make_grid(
        tmp_path / "grid",
        {(0.0, 1): [80.0, 81.0], (0.1, 1): [82.0, 83.0]},
        teachers={0.0: [85.0, 85.5], 0.1: [86.0, 86.5]},
    )
    run_ok(grid, tmp_path / "r", paper="cub-r18")
    rows = read_csv(tmp_path / "r.csv")
    paper = paper_tables()["cub-r18"]
    assert list(rows) == [("Teacher", "-")] + [("Student", t) for t in ("1", "2", "3", "64")]
    for (role, t), row in rows.items():
        for alpha in ("0.0", "0.1"):
            published = paper["teacher"][alpha] if role == "Teacher" else paper["student"][t][alpha]
            assert float(row[f"paper α = {alpha}"]) == published["top1"]
    assert rows[("Student", "64")]["α = 0.1 n"] == "0"
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "Table 2" in markdown and "| Student | 64 | — | 73.611 | — | 67.161 |" in markdown


def test_top5_paper_column_is_chosen_from_the_metric_key(tmp_path):
    grid = make_grid(tmp_path / "grid", {(0.1, 1): [70.0]}, teachers={0.1: [75.0]})
    for run in grid.iterdir():
        document = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({"final": {"top5": document["best"]["top1"] + 10}}))
    run_ok(grid, tmp_path / "r", paper="imagenet-r50", metric="final.top5")
    teacher = read_csv(tmp_path / "r.csv")[("Teacher", "-")]
    assert float(teacher["paper α = 0.1"]) == paper_tables()["imagenet-r50"]["teacher"]["0.1"]["top5"]
    assert teacher["α = 0.1"] == "85.000"


def test_console_script_prints_the_markdown(tmp_path):
    grid = make_grid(tmp_path / "grid", {(0.1, 1): [70.0]}, teachers={0.1: [75.0]})
    console = Path(sys.executable).parent / "lskd-results"
    result = subprocess.run(
        [str(console), str(grid), "--paper", "none", "--metric", "best.top1", "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (tmp_path / "t.md").read_text(encoding="utf-8")


# ---- bad inputs: one line, exit 2, nothing written ----------------------------------------------------


def one_line_error(outcome: Outcome, out: Path) -> str:
    lines = outcome.stderr.strip().splitlines()
    assert outcome.returncode == 2 and len(lines) == 1 and lines[0].startswith("lskd-results: error: "), outcome
    assert not list(out.parent.glob(f"{out.name}*"))
    return lines[0]


@pytest.mark.parametrize(
    "case",
    [
        "no-folder",
        "no-manifests",
        "unknown-metric",
        "unknown-paper",
        "ambiguous-paper-metric",
        "duplicate-seed",
        "bad-manifest",
        "bad-noise-factor",
        "bad-confidence",
        "two-levels",
    ],
)
def test_bad_inputs_stop_with_one_line(tmp_path, case):
    grid = make_grid(tmp_path / "grid", {(0.1, 1): [70.0, 71.0]}, teachers={0.1: [75.0]})
    args = {"paper": "none", "metric": "best.top1", "extra": []}
    expect = {}
    if case == "no-folder":
        grid, expect = tmp_path / "nowhere", ["nowhere", "no such folder"]
    elif case == "no-manifests":
        grid = tmp_path / "empty"
        (grid / "teacher-a0.1").mkdir(parents=True)
        expect = ["no run manifests", "run.json"]
    elif case == "unknown-metric":
        args["metric"], expect = "best.acc1", ["best.acc1", "top1"]
    elif case == "unknown-paper":
        args["paper"], expect = "cifar", ["cifar", "imagenet-r18", "iwslt-en-ru"]
    elif case == "ambiguous-paper-metric":
        args.update(paper="cub-r18", extra=["--paper-metric", "bleu"])
        expect = ["bleu", "top1, top5"]
    elif case == "duplicate-seed":
        add_run(grid / "copy", 0.1, 1, seed=1, value=72.0)
        (grid / "copy" / "s-0.1-word-1-s1").rename(grid / "another-s1")
        expect = ["another-s1", "s-0.1-word-1-s1", "seed 1"]
    elif case == "bad-manifest":
        (grid / "t-0.1-s1" / "run.json").write_text(json.dumps({"kind": "teacher", "alpha": 1.5}))
        expect = ["run.json", "1.5"]
    elif case == "bad-noise-factor":
        args["extra"], expect = ["--noise-factor", "0"], ["--noise-factor", "> 0"]
    elif case == "bad-confidence":
        args["extra"], expect = ["--confidence", "95"], ["--confidence 95", "between 0 and 1"]
    else:
        args["extra"], expect = ["--confidence", "0.9", "--noise-factor", "2"], ["--noise-factor", "--confidence"]
    out = tmp_path / "out" / "r"
    line = one_line_error(
        results(grid, "--paper", args["paper"], "--metric", args["metric"], "--out", out, *args["extra"]), out
    )
    assert all(word in line for word in expect), line


# ---- verdicts -------------------------------------------------------------------------------------

PAPER_LIKE = {  # the paper's five claims all hold, far beyond the seeds' spread
    (0.0, 1): 97.0,
    (0.0, 2): 96.5,
    (0.0, 3): 96.0,
    (0.0, 64): 90.0,
    (0.1, 1): 98.0,
    (0.1, 2): 96.0,
    (0.1, 3): 94.0,
    (0.1, 64): 80.0,
}
REVERSED = {  # every claim fails, far beyond the seeds' spread
    (0.0, 1): 98.0,
    (0.0, 2): 96.0,
    (0.0, 3): 94.0,
    (0.0, 64): 80.0,
    (0.1, 1): 97.0,
    (0.1, 2): 97.5,
    (0.1, 3): 98.0,
    (0.1, 64): 99.0,
}
SPREAD = (-0.05, 0.0, 0.05)


def seeded(means: dict, spread=SPREAD) -> dict:
    return {cell: [mean + d for d in spread] for cell, mean in means.items()}


def verdicts_of(tmp_path, cells, *extra, teachers=None) -> list[dict]:
    grid = make_grid(tmp_path / "grid", cells, teachers=teachers)
    return run_ok(grid, tmp_path / "r", *extra)["verdicts"]


def noisy(means: dict, seeds: int = 3, scale: float = 30.0, seed: int = 0) -> dict:
    """Each cell's seeds scattered by its own draws (no shared seed effect): differences within the noise."""
    rng = random.Random(seed)
    return {cell: [mean + rng.gauss(0.0, scale) for _ in range(seeds)] for cell, mean in means.items()}


def test_all_claims_hold_on_a_grid_shaped_like_the_paper(tmp_path):
    verdicts = verdicts_of(tmp_path, noisy(PAPER_LIKE, scale=0.05))
    assert [v["paper_item"] for v in verdicts] == [1, 2, 3, 4, 5]
    assert [v["verdict"] for v in verdicts] == ["holds"] * 5
    assert all(v["methods"] == ["paired t"] for v in verdicts)
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert markdown.count("| **holds** |") == 5 and "95 % CI" in markdown and "paired over 3 seeds" in markdown


def test_no_claim_holds_on_the_reversed_grid(tmp_path):
    verdicts = verdicts_of(tmp_path, noisy(REVERSED, scale=0.05))
    assert [v["verdict"] for v in verdicts] == ["does not hold"] * 5


def test_differences_inside_the_seed_spread_are_undecided(tmp_path):
    verdicts = verdicts_of(tmp_path, noisy(PAPER_LIKE, scale=30.0))
    assert [v["verdict"] for v in verdicts] == ["undecided"] * 5


def test_a_seed_effect_shared_by_every_cell_cancels_within_seeds(tmp_path):
    """±30 points of seed luck, the same in every cell of a seed (a teacher's seed shared by its students)."""
    verdicts = verdicts_of(tmp_path, seeded(PAPER_LIKE, spread=(-30.0, 0.0, 30.0)))
    assert [v["verdict"] for v in verdicts] == ["holds"] * 5


def test_one_seed_gives_no_verdict_but_shows_the_difference(tmp_path):
    verdicts = verdicts_of(tmp_path, seeded(PAPER_LIKE, spread=(0.0,)))
    assert [v["verdict"] for v in verdicts] == ["needs ≥ 2 seeds"] * 5
    claim = verdicts[1]
    (comparison,) = claim["comparisons"]
    assert comparison["method"] == "none" and comparison["interval"] is None and comparison["half_width"] is None
    assert comparison["difference"] == pytest.approx(PAPER_LIKE[(0.1, 1)] - PAPER_LIKE[(0.0, 1)])
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "α 0.1 T 1 − α 0.0 T 1 = +1.000 (needs ≥ 2 seeds: 1/1 seeds per cell, no interval)" in markdown


def test_equal_scores_are_no_difference(tmp_path):
    """Top-1 on 355 images moves in steps of 100/355: equal drops must not pass for a float-rounding 'win'."""
    top1 = {(0.1, 1): 346, (0.1, 2): 344, (0.1, 3): 343, (0.0, 1): 342, (0.0, 2): 341, (0.0, 3): 339}
    claims = verdicts_of(tmp_path, {cell: [100 * k / 355, 100 * (k - 1) / 355] for cell, k in top1.items()})
    claim = next(v for v in claims if v["paper_item"] == 4)
    assert [c["outcome"] for c in claim["comparisons"]] == ["holds", "undecided"]
    assert claim["comparisons"][1]["per_seed"] == {"1": 0.0, "2": 0.0}
    assert claim["verdict"] == "undecided"


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_paired_interval_is_scipys_paired_t(tmp_path, confidence):
    """Claim 2 on three paired seeds: the interval is scipy's ttest_rel's, at the stated level."""
    low, ls = [95.0, 97.0, 91.0], [96.5, 97.2, 93.9]
    claims = verdicts_of(
        tmp_path, {(0.0, 1): low, (0.1, 1): ls, (0.0, 2): low, (0.1, 2): ls}, "--confidence", confidence
    )
    (comparison,) = next(v for v in claims if v["paper_item"] == 2)["comparisons"]
    reference = scipy.stats.ttest_rel(ls, low)
    ci = reference.confidence_interval(confidence)
    assert comparison["method"] == "paired t" and comparison["n"] == 3 and comparison["dof"] == reference.df
    assert comparison["interval"] == [pytest.approx(ci.low), pytest.approx(ci.high)]
    assert comparison["mean"] / comparison["standard_error"] == pytest.approx(reference.statistic)
    assert comparison["half_width"] == pytest.approx(
        scipy.stats.t.ppf(0.5 + confidence / 2, 2) * statistics.stdev([b - a for a, b in zip(low, ls)]) / math.sqrt(3)
    )
    assert comparison["per_seed"] == {str(s): pytest.approx(b - a) for s, (a, b) in enumerate(zip(low, ls), 1)}
    assert comparison["level"] == confidence
    assert comparison["outcome"] == ("holds" if ci.low > 0 else "undecided")
    with (tmp_path / "r-comparisons.csv").open(encoding="utf-8") as handle:
        (row,) = [r for r in csv.DictReader(handle) if r["claim"] == "2"]
    assert (row["method"], row["n"], row["outcome"]) == ("paired t", "3", comparison["outcome"])
    assert [float(row["low"]), float(row["high"])] == [
        pytest.approx(ci.low, rel=1e-5),
        pytest.approx(ci.high, rel=1e-5),
    ]
    assert row["per_seed"] == " ".join(f"{s}:{b - a:.6g}" for s, (a, b) in enumerate(zip(low, ls), 1))


def test_seeds_that_do_not_pair_use_welchs_interval_and_say_so(tmp_path):
    grid = tmp_path / "grid"
    base, ls = [95.0, 97.0, 91.0], [99.5, 98.2, 99.9, 98.8]
    for alpha, values, first in ((0.0, base, 1), (0.1, ls, 11)):
        add_run(grid, alpha, None, first, 90.0)
        for temperature in (1, 2):
            for seed, value in enumerate(values, first):
                add_run(grid, alpha, temperature, seed, value)
    claims = run_ok(grid, tmp_path / "r")["verdicts"]
    (comparison,) = next(v for v in claims if v["paper_item"] == 2)["comparisons"]
    reference = scipy.stats.ttest_ind(ls, base, equal_var=False)
    assert comparison["method"] == "Welch t" and comparison["per_seed"] == {}
    assert comparison["dof"] == pytest.approx(reference.df)
    assert comparison["mean"] / comparison["standard_error"] == pytest.approx(reference.statistic)
    ci = reference.confidence_interval(0.95)
    assert comparison["interval"] == [pytest.approx(ci.low), pytest.approx(ci.high)]
    assert "Welch, unpaired: 4/3 seeds per cell" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_the_deprecated_noise_factor_reads_as_the_normal_bands_level(tmp_path):
    grid = make_grid(tmp_path / "grid", noisy(PAPER_LIKE, scale=0.05))
    outcome = results(grid, "--paper", "none", "--metric", "best.top1", "--out", tmp_path / "r", "--noise-factor", 2)
    assert outcome.returncode == 0, outcome.stderr
    (warning,) = outcome.stderr.strip().splitlines()
    level = scipy.stats.norm.cdf(2) - scipy.stats.norm.cdf(-2)
    assert warning.startswith("lskd-results: warning: --noise-factor is deprecated") and f"{level:.4f}" in warning
    document = json.loads((tmp_path / "r-verdicts.json").read_text(encoding="utf-8"))
    assert document["level"] == pytest.approx(level)
    assert {c["level"] for v in document["verdicts"] for c in v["comparisons"]} == {document["level"]}


def test_claim_of_mixed_steps_fails_on_one_step_against_it(tmp_path):
    means = dict(PAPER_LIKE)
    means[(0.1, 2)] = 98.0  # no change from T 1 to T 2: inside the noise band
    means[(0.1, 3)] = 99.0  # the LS teacher's student improves from T 2 to T 3
    claim = next(v for v in verdicts_of(tmp_path, noisy(means, scale=0.05)) if v["paper_item"] == 3)
    assert [c["outcome"] for c in claim["comparisons"]] == [
        "undecided",
        "does not hold",
        "holds",
    ]
    assert claim["verdict"] == "does not hold"


def test_claims_without_their_cells_are_not_testable(tmp_path):
    cells = seeded({key: value for key, value in PAPER_LIKE.items() if key[0] == 0.1})
    verdicts = verdicts_of(tmp_path, cells, teachers={0.1: [90.0]})
    assert [v["verdict"] for v in verdicts] == ["holds", "not testable", "holds", "not testable", "not testable"]
    assert "no non-LS teacher" in verdicts[1]["note"]
    cells = seeded(PAPER_LIKE)
    cells[(0.0, 64)] = [None, None, None]
    verdicts = verdicts_of(tmp_path / "b", cells)
    assert [v["verdict"] for v in verdicts] == ["not testable", "holds", "holds", "not testable", "not testable"]
    assert verdicts[0]["note"] == "no score for α 0.0 T 64"


def test_each_ls_teacher_is_checked_against_the_non_ls_one(tmp_path):
    cells = seeded(PAPER_LIKE)
    cells.update({(0.2, t): [value - 5.0 for value in cells[(0.1, t)]] for t in (1, 2, 3, 64)})
    verdicts = verdicts_of(tmp_path, cells, teachers={0.0: [90.0], 0.1: [91.0], 0.2: [92.0]})
    assert [(v["paper_item"], "α 0.1" in v["claim"], "α 0.2" in v["claim"]) for v in verdicts] == [
        (item, True, False) for item in range(1, 6)
    ] + [(item, False, True) for item in range(1, 6)]
    assert [v["verdict"] for v in verdicts[5:7]] == ["does not hold", "does not hold"]  # 0.2 is 5 points worse


@pytest.mark.parametrize(
    "table, expected",
    [
        ("cub-r18", ["holds", "holds", "holds", "holds", "holds"]),
        ("cub-mnv2", ["does not hold", "holds", "holds", "holds", "holds"]),  # §5.1: α 0.0 T 2 is the best student
        ("imagenet-r50", ["holds", "holds", "holds", "holds", "does not hold"]),  # §5.5: no deficit at T 64
        ("iwslt-en-de", ["holds", "holds", "holds", "does not hold", "holds"]),  # §5.4 absent for NMT; §5.5 at T 64
    ],
)
def test_the_papers_own_numbers_give_the_digests_verdicts(tmp_path, table, expected):
    verdicts = verdicts_of(
        tmp_path, seeded(PAPER_LIKE), "--paper", table, "--paper-metric", paper_tables()[table]["metrics"][0]
    )
    assert [v["paper_verdict"] for v in verdicts] == expected


# ---- plots ----------------------------------------------------------------------------------------


def test_score_plot_has_one_line_per_alpha_and_the_papers_dashed(tmp_path):
    from lskd_report.aggregate import collect
    from lskd_report.plots import score_figure
    from lskd_report.results import paper_values

    cells = noisy(PAPER_LIKE, scale=1.0)
    grid_dir = make_grid(tmp_path / "grid", cells)
    run_ok(grid_dir, tmp_path / "r", paper="cub-r18")
    image = tmp_path / "r-score.png"
    assert image.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(image).shape
    assert width >= 600 and height >= 400
    assert f"- {image}" in (tmp_path / "r.md").read_text(encoding="utf-8")

    grid = collect(grid_dir, "best.top1")
    rows = grid.student_rows("word")
    paper = paper_values(paper_tables()["cub-r18"], "top1")
    figure = score_figure(grid.cells, rows, [0.0, 0.1], paper, "t", "top-1", 0.9)
    (axes,) = figure.axes
    bars = axes.containers
    assert len(bars) == 2 and all(len(bar.lines[0].get_xdata()) == 4 for bar in bars)
    assert [list(bar.lines[0].get_ydata()) for bar in bars] == [
        [pytest.approx(statistics.mean(cells[(a, t)])) for t in (1, 2, 3, 64)] for a in (0.0, 0.1)
    ]
    for bar, alpha in zip(bars, (0.0, 0.1)):  # each bar: the 90 % t interval of the cell's mean
        ((segments),) = [collection.get_segments() for collection in bar.lines[2]]
        for values, segment in zip((cells[(alpha, t)] for t in (1, 2, 3, 64)), segments):
            half = scipy.stats.t.ppf(0.95, 2) * statistics.stdev(values) / math.sqrt(3)
            assert [y for _, y in segment] == [pytest.approx(statistics.mean(values) + s * half) for s in (-1, 1)]
    assert axes.get_legend().get_title().get_text() == "teacher (error bars: 90 % t interval of the mean over seeds)"
    dashed = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2
    assert list(dashed[1].get_ydata()) == [
        paper_tables()["cub-r18"]["student"][t]["0.1"]["top1"] for t in ("1", "2", "3", "64")
    ]


def diffusion_report(path: Path, models: dict) -> None:
    """A diffusion.json as lskd_vision's visualize writes it: models by name, checkpoints under inputs."""
    document = {"models": {}, "inputs": {"checkpoints": {}}}
    for name, (run, eta) in models.items():
        split = {
            "penultimate": {
                "similar": {"anisotropy": eta, "separation": eta / 2},
                "control": {"anisotropy": 1.0, "separation": None},
            }
        }
        document["models"][name] = {"train": split, "valid": split}
        document["inputs"]["checkpoints"][name] = {"path": str(run / "best.pth")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def test_diffusion_measures_against_t_per_alpha(tmp_path):
    grid = make_grid(tmp_path / "grid", seeded(PAPER_LIKE, spread=(0.0, 0.1)), teachers={0.0: [90, 91], 0.1: [92, 93]})
    etas = {(0.0, 1, 1): 2.0, (0.0, 1, 2): 2.5, (0.1, 1, 1): 1.5, (0.1, 1, 2): 1.7, (0.1, 3, 1): 2.9}
    for seed in (1, 2):  # one report per seed, as the recipes write them
        models = {
            f"student {a} {t}": (grid / f"s-{a}-word-{t}-s{s}", eta) for (a, t, s), eta in etas.items() if s == seed
        }
        diffusion_report(grid / f"diffusion-s{seed}" / "diffusion.json", models)
    models = {
        "teacher 0.1": (Path("elsewhere") / "t-0.1-s1", 3.0),  # a path recorded from another folder
        "stranger": (tmp_path / "other-run", 9.0),
    }
    diffusion_report(grid / "diffusion.json", models)
    run_ok(grid, tmp_path / "r")
    image = tmp_path / "r-diffusion.png"
    assert image.read_bytes()[:8] == PNG_SIGNATURE
    markdown = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert f"- {image}" in markdown and "diffusion.json: stranger" in markdown
    measures = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["diffusion"]
    similar = {(c["role"], c["T"], c["alpha"]): c for c in measures["η similar (train)"]}
    assert similar[("student", 1.0, 0.0)]["mean"] == pytest.approx(statistics.mean([2.0, 2.5]))
    assert similar[("student", 1.0, 0.0)]["sd"] == pytest.approx(statistics.stdev([2.0, 2.5]))
    assert similar[("student", 3.0, 0.1)]["n"] == 1 and similar[("teacher", None, 0.1)]["mean"] == 3.0
    assert measures["separation (valid)"][0]["mean"] == pytest.approx(similar[("teacher", None, 0.1)]["mean"] / 2)
    assert {c["mean"] for c in measures["η control (valid)"]} == {1.0} and len(measures["η control (valid)"]) == 4


def test_no_diffusion_report_no_diffusion_plot(tmp_path):
    run_ok(make_grid(tmp_path / "grid", seeded(PAPER_LIKE)), tmp_path / "r")
    assert not (tmp_path / "r-diffusion.png").exists() and (tmp_path / "r-score.png").is_file()


# ---- the stored paper numbers -------------------------------------------------------------------------


def digest_tables() -> list:
    """Every teacher/student row of paper.md §2.1-2.6, parsed from the Markdown independently of the JSON."""
    if not os.environ.get(DIGEST_ENV):
        pytest.skip(
            f"needs the paper-tables digest: set {DIGEST_ENV}=FILE (the reference paper.md with its "
            "'## 2. Results tables' section)"
        )
    text = Path(os.environ[DIGEST_ENV]).read_text(encoding="utf-8").split("## 2. Results tables")[1].split("### 2.7")[0]
    return re.findall(r"^\| (?:[^|]*?)(Teacher|Student)[^|]*\| ([^|]*)\| ([^|]*)\| ([^|]*)\|$", text, re.M)


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
