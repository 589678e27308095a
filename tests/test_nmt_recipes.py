"""The NMT recipes end to end: recipes/iwslt14_en_de.sh in its tiny profile on the real-format de-en release
fixture (data-prep, teachers and students per seed, caches, evaluation, manifests, results call), re-runs that
start no process, a resumed training, the toy recipe's sequence-level KD stages (when lskd-distill-corpus is
installed) and one-line errors (recipes/toy_translation.sh's word-level grid runs in tests/test_demo.py)."""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess

import pytest

from environment import PYTHON
from lskd_grid.recipe_table import distill_command
from lskd_grid.runs import RunManifest, find_runs
from repo_root import REPO
from sacrebleu_cli import cli_bleu

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"

ALPHAS = ["0.05"]  # two decimals: folder names and manifests are not limited to one
TEMPERATURES = ["1"]
SEEDS = ["1", "2"]
# A grid small enough for CI: a teacher per seed, one student each, a few updates each.
# Two lanes (one per seed) at once, as on a 2-core CPU.
TINY_GRID = {
    "ALPHAS": " ".join(ALPHAS),
    "TEMPERATURES": " ".join(TEMPERATURES),
    "SEEDS": " ".join(SEEDS),
    "MAX_UPDATE": "8",
    "MAX_LINES": "300",
    "JOBS": "2",
}
TEACHERS = [f"teacher-a{a}-s{s}" for s in SEEDS for a in ALPHAS]
STUDENTS = [f"student-a{a}-T{t}-word-s{s}" for s in SEEDS for a in ALPHAS for t in TEMPERATURES]
LANES = {
    f"a{a}-s{s}": [f"teacher-a{a}-s{s}", f"eval-teacher-a{a}-s{s}", f"cache-a{a}-s{s}"]
    + [f"{kind}-a{a}-T{t}-word-s{s}" for t in TEMPERATURES for kind in ("student", "eval-student")]
    for s in SEEDS
    for a in ALPHAS
}
STAGES = ["data"] + [stage for lane in LANES.values() for stage in lane] + ["results"]
SCORED_TEXTS = ("hyp.detok", "ref.detok", "hyp.tok", "ref.tok")
PROGRESS = re.compile(r"^(start|skip|done) +(\S+?):?(?: |$)")


def run_recipe(script, env, *args):
    return subprocess.run(
        ["bash", str(REPO / "recipes" / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": str(PYTHON), "PYTHONWARNINGS": "ignore", **env},
    )


def progress(stdout):
    """(kind, stage) of every progress line the recipe printed."""
    return [match.groups() for match in map(PROGRESS.match, stdout.splitlines()) if match]


def spying_python(folder):
    """An interpreter that logs each start (its arguments) to folder/starts, then runs the real one."""
    spy = folder / "python"
    spy.write_text(f'#!/bin/sh\necho "$*" >>"{folder}/starts"\nexec "{PYTHON}" "$@"\n')
    spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    return spy


@pytest.fixture(scope="module")
def grid(de_en_release, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny-grid")
    env = {**TINY_GRID, "ORIG": str(de_en_release.folder), "RUN_DIR": str(run_dir)}
    result = run_recipe("iwslt14_en_de.sh", env, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir, env, result


@pytest.fixture(scope="module")
def rerun(grid, tmp_path_factory):
    run_dir, env, _ = grid
    mtimes = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*") if path.is_file()}
    spy_dir = tmp_path_factory.mktemp("spy")
    result = run_recipe("iwslt14_en_de.sh", {**env, "PYTHON": str(spying_python(spy_dir))}, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    return result, mtimes, (spy_dir / "starts").read_text().splitlines()


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


def test_the_two_teachers_lanes_run_at_once(grid):
    _, _, result = grid
    lines = progress(result.stdout)
    first_teacher_done = lines.index(("done", TEACHERS[0]))
    assert ("start", TEACHERS[1]) in lines[:first_teacher_done]


def test_every_run_records_its_manifest(grid):
    run_dir = grid[0]
    found = {path.name: manifest for path, manifest in find_runs(run_dir)}
    assert sorted(found) == sorted(TEACHERS + STUDENTS)
    for s in SEEDS:
        for a in ALPHAS:
            assert found[f"teacher-a{a}-s{s}"] == RunManifest("teacher", float(a), seed=int(s), metrics="bleu.json")
            for t in TEMPERATURES:
                assert found[f"student-a{a}-T{t}-word-s{s}"] == RunManifest(
                    "student",
                    float(a),
                    seed=int(s),
                    temperature=float(t),
                    kd_mode="word",
                    teacher=f"teacher-a{a}-s{s}",
                    metrics="bleu.json",
                )


def test_each_model_trains_with_its_seed(grid):
    run_dir = grid[0]
    for run in TEACHERS + STUDENTS:
        seed = run.rsplit("-s", 1)[1]
        assert f"'seed': {seed}," in (run_dir / "logs" / f"{run}.log").read_text(), run
    # different seeds give different teachers of the same alpha
    first, second = (run_dir / f"teacher-a0.05-s{s}" / "checkpoints" / "checkpoint_best.pt" for s in SEEDS)
    assert hashlib.sha256(first.read_bytes()).digest() != hashlib.sha256(second.read_bytes()).digest()


def test_teachers_are_label_smoothed_at_their_alpha(grid):
    run_dir = grid[0]
    for teacher in TEACHERS:
        alpha = re.match(r"teacher-a(.+)-s\d+$", teacher)[1]
        assert (run_dir / teacher / "checkpoints" / "checkpoint_best.pt").is_file()
        log = (run_dir / "logs" / f"{teacher}.log").read_text()
        assert "'criterion': {'_name': 'label_smoothed_teacher', 'label_smoothing': " + str(float(alpha)) in log


def test_caches_hold_top4_of_the_teacher_on_train_and_valid(grid):
    run_dir = grid[0]
    for teacher in TEACHERS:
        checkpoint = run_dir / teacher / "checkpoints" / "checkpoint_best.pt"
        for subset in ("train", "valid"):
            fingerprint = json.loads((run_dir / teacher / "cache-top4" / f"{subset}.json").read_text())
            assert fingerprint["subset"] == subset and fingerprint["topk"] == 4
            assert fingerprint["teacher_checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_students_distil_from_the_cache_of_their_seeds_teacher_at_their_temperature(grid):
    run_dir = grid[0]
    for student in STUDENTS:
        alpha, temperature, seed = re.match(r"student-a(.+)-T(.+)-word-s(\d+)$", student).groups()
        log = (run_dir / "logs" / f"{student}.log").read_text()
        assert f"'teacher_cache': '{run_dir / f'teacher-a{alpha}-s{seed}' / 'cache-top4'}'" in log
        assert f"'kd_temperature': {float(temperature)}, 'kd_weight': 0.9" in log
        assert "'_name': 'word_kd', 'label_smoothing': 0.1" in log
        assert (run_dir / student / "checkpoints" / "checkpoint_best.pt").is_file()


def test_every_model_is_scored_on_the_tiny_profile_subset(grid, tmp_path):
    run_dir = grid[0]
    references = (run_dir / "data" / "valid.de").read_text().splitlines()
    for run in TEACHERS + STUDENTS:
        scores = json.loads((run_dir / run / "bleu.json").read_text())
        assert scores["subset"] == "valid" and scores["n_sentences"] == len(references)
        assert scores["checkpoint"] == str(run_dir / run / "checkpoints" / "checkpoint_best.pt")
        # The sacreBLEU command re-scores the texts the evaluation wrote beside bleu.json (the recipe's paper
        # text profile: both numbers case-insensitive).
        text = {name: (run_dir / run / f"valid.{name}").read_text().splitlines() for name in SCORED_TEXTS}
        assert len(text["hyp.detok"]) == len(text["hyp.tok"]) == len(references)
        sacrebleu = cli_bleu(tmp_path, text["hyp.detok"], text["ref.detok"], "-lc")
        tokenized = cli_bleu(tmp_path, text["hyp.tok"], text["ref.tok"], "-tok", "none", "-lc")
        assert scores["sacrebleu"]["score"] == pytest.approx(sacrebleu, abs=1e-4), run
        assert scores["tokenized_bleu"]["score"] == pytest.approx(tokenized, abs=1e-4), run


def test_results_are_built_by_lskd_results_on_the_grid_folder(grid):
    run_dir, _, result = grid
    log = (run_dir / "logs" / "results.log").read_text()
    assert f"-m lskd_report.results {run_dir} --paper iwslt-en-de --metric tokenized_bleu.score" in log
    markdown = (run_dir / "results.md").read_text()
    assert (run_dir / "results.csv").is_file() and markdown and result.stdout.endswith(markdown)


def test_rerun_skips_every_stage_starts_no_process_and_changes_nothing(rerun):
    result, mtimes, starts = rerun
    lines = progress(result.stdout)
    assert {kind for kind, _ in lines} == {"skip"} and sorted(stage for _, stage in lines) == sorted(STAGES)
    assert {path: path.stat().st_mtime_ns for path in mtimes} == mtimes
    assert starts == ["-m lskd_grid.settle iwslt14_en_de --tiny"]


def test_deleted_outputs_run_again_and_training_resumes_from_checkpoint_last(grid, rerun):
    run_dir, env, _ = grid
    student = STUDENTS[-1]
    (run_dir / student / "training-finished").unlink()
    (run_dir / student / "bleu.json").unlink()
    shutil.rmtree(run_dir / "stages")  # the settings records: MAX_UPDATE changes on purpose (docs/nmt-recipes.md)
    result = run_recipe("iwslt14_en_de.sh", {**env, "MAX_UPDATE": "12"}, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    started = [stage for kind, stage in progress(result.stdout) if kind == "start"]
    assert started == [student, f"eval-{student}", "results"]
    log = (run_dir / "logs" / f"{student}.log").read_text()
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 8 updates\)", log)
    assert "num_updates: 12 >= max_update: 12" in log
    assert (run_dir / "results.csv").stat().st_mtime_ns >= (run_dir / student / "bleu.json").stat().st_mtime_ns


SEQ_KD = pytest.mark.skipif(
    not distill_command(),
    reason="lskd-distill-corpus is not installed in this environment (the seq and seq+word stages call it)",
)


@SEQ_KD
def test_toy_seq_and_seq_word_students_train_on_their_teachers_distilled_corpus(tmp_path):
    run_dir = tmp_path / "toy"
    env = {"RUN_DIR": str(run_dir), "ALPHAS": "0.1", "TEMPERATURES": "2", "KD_MODES": "seq seq+word", "MAX_UPDATE": "8"}
    result = run_recipe("toy_translation.sh", env, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    teacher = run_dir / "teacher-a0.1-s1"
    started = [stage for kind, stage in progress(result.stdout) if kind == "start"]
    assert started == [
        "data",
        "teacher-a0.1-s1",
        "eval-teacher-a0.1-s1",
        "distill-a0.1-s1",
        "distilled-cache-a0.1-s1",
        "student-a0.1-seq-s1",
        "eval-student-a0.1-seq-s1",
        "student-a0.1-T2-seq+word-s1",
        "eval-student-a0.1-T2-seq+word-s1",
        "results",
    ]
    found = {path.name: manifest for path, manifest in find_runs(run_dir)}
    assert found["student-a0.1-seq-s1"] == RunManifest(
        "student", 0.1, kd_mode="seq", teacher=teacher.name, metrics="bleu.json"
    )
    assert found["student-a0.1-T2-seq+word-s1"].temperature == 2.0
    seq_log = (run_dir / "logs" / "student-a0.1-seq-s1.log").read_text()
    assert f"'data': '{teacher / 'distilled'}'" in seq_log and "'_name': 'label_smoothed_teacher'" in seq_log
    both_log = (run_dir / "logs" / "student-a0.1-T2-seq+word-s1.log").read_text()
    assert f"'teacher_cache': '{teacher / 'distilled-cache-top4'}'" in both_log and "'_name': 'word_kd'" in both_log
    for student in ("student-a0.1-seq-s1", "student-a0.1-T2-seq+word-s1"):
        assert json.loads((run_dir / student / "bleu.json").read_text())["subset"] == "valid"


def one_line_failure(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.skipif((REPO / "data-prep" / "archives" / "en-ru.tgz").exists(), reason="an en-ru archive is present")
def test_missing_release_archive_is_the_data_prep_one_line_message(tmp_path):
    result = run_recipe("iwslt_en_ru.sh", {"RUN_DIR": str(tmp_path / "run"), "SOURCE": "wit3"}, "--tiny")
    message = one_line_failure(result)
    assert message.startswith("failed data") and "prepare-iwslt-en-ru.sh: missing" in message and "en-ru.tgz" in message
    assert not (tmp_path / "run" / "data").exists()
