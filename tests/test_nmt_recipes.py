"""The NMT recipes end to end: recipes/iwslt14_en_de.sh in its tiny profile on a generated real-format de-en release
fixture (data-prep, teachers, caches, students, evaluation, results table), re-runs that skip every stage,
a resumed training and one-line errors (recipes/toy_translation.sh runs in tests/test_demo.py)."""
import csv
import hashlib
import json
import os
import re
import subprocess

import pytest

from conftest import PYTHON, REPO

ALPHAS = ["0.0", "0.1"]
TEMPERATURES = ["1", "64"]
# A grid small enough for CI: two teachers, four students, a few updates each.
# Two lanes at once (one per teacher), as on a 2-core CPU.
TINY_GRID = {"ALPHAS": " ".join(ALPHAS), "TEMPERATURES": " ".join(TEMPERATURES), "MAX_UPDATE": "8",
             "MAX_LINES": "300", "JOBS": "2"}
TEACHERS = [f"teacher-a{a}" for a in ALPHAS]
STUDENTS = [f"student-a{a}-T{t}" for a in ALPHAS for t in TEMPERATURES]
LANES = {a: [f"{kind}-a{a}" for kind in ("teacher", "eval-teacher", "cache")]
         + [f"{kind}-a{a}-T{t}" for t in TEMPERATURES for kind in ("student", "eval-student")] for a in ALPHAS}
STAGES = ["data"] + [stage for a in ALPHAS for stage in LANES[a]] + ["results"]
PROGRESS = re.compile(r"^(start|skip|done) +(\S+?):?(?: |$)")


def run_recipe(script, env, *args):
    return subprocess.run(["bash", str(REPO / "recipes" / script), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": str(PYTHON), "PYTHONWARNINGS": "ignore", **env})


def progress(stdout):
    """(kind, stage) of every progress line the recipe printed."""
    return [match.groups() for match in map(PROGRESS.match, stdout.splitlines()) if match]


@pytest.fixture(scope="module")
def grid(de_en_release, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny-grid")
    env = {**TINY_GRID, "ORIG": str(de_en_release.folder), "RUN_DIR": str(run_dir)}
    result = run_recipe("iwslt14_en_de.sh", env, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir, env, result


@pytest.fixture(scope="module")
def rerun(grid):
    run_dir, env, _ = grid
    mtimes = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()}
    result = run_recipe("iwslt14_en_de.sh", env, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    return result, mtimes


@pytest.mark.slow
def test_first_run_starts_and_finishes_every_stage_in_order(grid):
    _, _, result = grid
    lines = progress(result.stdout)
    for kind in ("start", "done"):
        stages = [stage for line_kind, stage in lines if line_kind == kind]
        assert sorted(stages) == sorted(STAGES)
        assert stages[0] == "data" and stages[-1] == "results"
        for lane in LANES.values():
            assert [stage for stage in stages if stage in lane] == lane
    assert all(re.search(rf"^done  {re.escape(stage)} in \d+s$", result.stdout, re.M) for stage in STAGES)
    for stage in STAGES:
        assert (grid[0] / "logs" / f"{stage}.log").stat().st_size > 0


@pytest.mark.slow
def test_the_two_teachers_lanes_run_at_once(grid):
    _, _, result = grid
    lines = progress(result.stdout)
    first_teacher_done = lines.index(("done", TEACHERS[0]))
    assert ("start", TEACHERS[1]) in lines[:first_teacher_done]


@pytest.mark.slow
def test_teachers_are_label_smoothed_at_their_alpha(grid):
    run_dir = grid[0]
    for alpha, teacher in zip(ALPHAS, TEACHERS):
        assert (run_dir / teacher / "checkpoints" / "checkpoint_best.pt").is_file()
        log = (run_dir / "logs" / f"{teacher}.log").read_text()
        assert "'criterion': {'_name': 'label_smoothed_teacher', 'label_smoothing': " + str(float(alpha)) in log


@pytest.mark.slow
def test_caches_hold_top4_of_the_teacher_on_train_and_valid(grid):
    run_dir = grid[0]
    for teacher in TEACHERS:
        checkpoint = run_dir / teacher / "checkpoints" / "checkpoint_best.pt"
        for subset in ("train", "valid"):
            fingerprint = json.loads((run_dir / teacher / "cache-top4" / f"{subset}.json").read_text())
            assert fingerprint["subset"] == subset and fingerprint["topk"] == 4
            assert fingerprint["teacher_checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


@pytest.mark.slow
def test_students_distil_from_their_teachers_cache_at_their_temperature(grid):
    run_dir = grid[0]
    for student in STUDENTS:
        alpha, temperature = re.match(r"student-a(.+)-T(.+)", student).groups()
        log = (run_dir / "logs" / f"{student}.log").read_text()
        assert f"'teacher_cache': '{run_dir / f'teacher-a{alpha}' / 'cache-top4'}'" in log
        assert f"'kd_temperature': {float(temperature)}, 'kd_weight': 0.9" in log
        assert "'_name': 'word_kd', 'label_smoothing': 0.1" in log
        assert (run_dir / student / "checkpoints" / "checkpoint_best.pt").is_file()


@pytest.mark.slow
def test_every_model_is_scored_on_the_tiny_profile_subset(grid):
    run_dir = grid[0]
    references = (run_dir / "data" / "valid.de").read_text().splitlines()
    for run in TEACHERS + STUDENTS:
        scores = json.loads((run_dir / run / "bleu.json").read_text())
        assert scores["subset"] == "valid" and scores["n_sentences"] == len(references)
        assert scores["checkpoint"] == str(run_dir / run / "checkpoints" / "checkpoint_best.pt")
        assert 0 <= scores["sacrebleu"]["score"] <= 100 and 0 <= scores["tokenized_bleu"]["score"] <= 100


@pytest.mark.slow
def test_results_table_sets_our_bleu_beside_the_papers(grid):
    run_dir = grid[0]
    paper = json.loads((REPO / "lskd" / "paper_results.json").read_text())["iwslt-en-de"]
    with (run_dir / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["role"], row["T"]) for row in rows] == [("Teacher", "-")] + [("Student", t) for t in ("1", "2", "3", "64")]
    for row in rows:
        for alpha in ALPHAS:
            run = f"teacher-a{alpha}" if row["role"] == "Teacher" else f"student-a{alpha}-T{row['T']}"
            ours = json.loads((run_dir / run / "bleu.json").read_text())["tokenized_bleu"]["score"] \
                if (run_dir / run).is_dir() else None
            assert row[f"α = {alpha}"] == ("" if ours is None else f"{ours:.3f}")
            published = paper["teacher"][alpha] if row["role"] == "Teacher" else paper["student"][row["T"]][alpha]
            assert float(row[f"paper α = {alpha}"]) == pytest.approx(published["bleu"])
    markdown = (run_dir / "results.md").read_text().splitlines()
    table = [line for line in markdown if line.startswith("|")]
    assert len(table) == 2 + len(rows) and len({line.count("|") for line in table}) == 1


@pytest.mark.slow
def test_rerun_skips_every_stage_and_changes_nothing(grid, rerun):
    """What makes a re-run cheap: no stage runs, so no log grows and no file is written or added."""
    result, mtimes = rerun
    lines = progress(result.stdout)
    assert {kind for kind, _ in lines} == {"skip"} and sorted(stage for _, stage in lines) == sorted(STAGES)
    assert {path: path.stat().st_mtime_ns for path in grid[0].rglob("*") if path.is_file()} == mtimes


@pytest.mark.slow
def test_deleted_outputs_run_again_and_training_resumes_from_checkpoint_last(grid, rerun):
    run_dir, env, _ = grid
    student = STUDENTS[-1]
    (run_dir / student / "training-finished").unlink()
    (run_dir / student / "bleu.json").unlink()
    result = run_recipe("iwslt14_en_de.sh", {**env, "MAX_UPDATE": "12"}, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    started = [stage for kind, stage in progress(result.stdout) if kind == "start"]
    assert started == [student, f"eval-{student}", "results"]
    log = (run_dir / "logs" / f"{student}.log").read_text()
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 8 updates\)", log)
    assert "num_updates: 12 >= max_update: 12" in log
    assert (run_dir / "results.csv").stat().st_mtime_ns >= (run_dir / student / "bleu.json").stat().st_mtime_ns


def one_line_failure(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.skipif((REPO / "data-prep" / "archives" / "en-ru.tgz").exists(), reason="an en-ru archive is present")
def test_missing_release_archive_is_the_data_prep_one_line_message(tmp_path):
    result = run_recipe("iwslt_en_ru.sh", {"RUN_DIR": str(tmp_path / "run")}, "--tiny")
    message = one_line_failure(result)
    assert message.startswith("failed data") and "prepare-iwslt-en-ru.sh: missing" in message and "en-ru.tgz" in message
    assert not (tmp_path / "run" / "data").exists()


@pytest.mark.parametrize("env, needle", [
    ({"ARCHIVE": "/nonexistent/en-ru.tgz"}, "ARCHIVE '/nonexistent/en-ru.tgz': no such file"),
    ({"ALPHAS": "0.0 0.05"}, "ALPHAS value '0.05'"),
    ({"TEMPERATURES": "1 0"}, "TEMPERATURES value '0'"),
    ({"GPUS": "two"}, "GPUS 'two'"),
    ({"FP16": "1", "GPUS": "0"}, "FP16=1 with GPUS=0"),
    ({"PROFILE": "huge"}, "PROFILE 'huge': expected one of: paper tiny"),
    ({"KD_WEIGHT": "1.5"}, "KD_WEIGHT '1.5'"),
    ({"JOBS": "0", "PROFILE": "tiny"}, "JOBS '0': expected an integer >= 1"),
])
def test_bad_settings_fail_with_one_line_before_writing(env, needle, tmp_path):
    result = run_recipe("iwslt_en_ru.sh", {"RUN_DIR": str(tmp_path / "run"), **env})
    assert result.returncode == 2 and needle in one_line_failure(result)
    assert not (tmp_path / "run").exists()


def test_unknown_flag_and_help(tmp_path):
    result = run_recipe("iwslt14_de_en.sh", {}, "--fast")
    assert "unknown argument '--fast'" in one_line_failure(result)
    usage = run_recipe("iwslt14_de_en.sh", {}, "--help")
    assert usage.returncode == 0
    for name in ("ARCH", "MAX_UPDATE", "MAX_TOKENS", "LR", "WARMUP", "TEMPERATURES", "ALPHAS", "TOPK", "KD_WEIGHT",
                 "GPUS", "FP16", "RUN_DIR", "ORIG", "ARCHIVE", "PROFILE"):
        assert re.search(rf"^  {name} ", usage.stdout, re.M), name
