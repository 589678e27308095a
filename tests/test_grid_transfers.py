"""The transfer as a grid axis (lskd_grid.transfers): the runs DIVERGENCES plans, their manifests and stage
records, the Slurm dry run, bad values refused in one line before anything is written, and lskd-results split
into one table per transfer on a hand-made grid folder. Nothing here trains."""

import csv
import io
import json
import statistics
import subprocess

import pytest

from environment import PYTHON
from lskd_grid.recipe_settings import settle
from lskd_grid.recipe_table import RECIPES
from lskd_grid.runs import RunManifest, read_manifest, write_manifest
from recipe_runs import run_recipe
from repo_root import REPO
from results_runs import results


def plan(recipe, env, tmp_path):
    values = settle(RECIPES[recipe], ["--run-dir", str(tmp_path / "grid")], env)
    return values, RECIPES[recipe].plan(values)


def test_divergences_plan_one_student_per_divergence_and_kl_keeps_its_names(tmp_path):
    env = {"ALPHAS": "0.1", "TEMPERATURES": "2", "SEEDS": "1", "KD_MODES": "word seq"}
    values, stages = plan("toy_translation", {**env, "DIVERGENCES": "kl reverse_kl"}, tmp_path)
    names = [s.name for s in stages if s.kind in ("teacher", "student")]
    assert names == [
        "teacher-a0.1-s1",
        "student-a0.1-T2-word-s1",
        "student-a0.1-T2-word-reverse_kl-s1",
        "student-a0.1-seq-s1",
    ]
    # the default grid: the same names without the reverse_kl student, and identical stage records
    _, default = plan("toy_translation", env, tmp_path)
    assert [s.name for s in default if s.kind in ("teacher", "student")] == [n for n in names if "reverse" not in n]
    records = {s.name: s.settings for s in stages}
    assert all(records[s.name] == s.settings for s in default)
    reverse = records["student-a0.1-T2-word-reverse_kl-s1"]
    assert reverse["DIVERGENCE"] == "reverse_kl" and "JSD_BETA" not in reverse and "SKEW" not in reverse
    assert "DIVERGENCE" not in records["student-a0.1-T2-word-s1"]


def test_the_plan_command_ends_a_non_kl_student_s_row_with_its_divergence():
    command = [str(PYTHON), "-m", "lskd_grid.grid", "plan", "--alphas", "0.1", "--temperatures", "2"]
    rows = subprocess.run(
        [*command, "--kd-modes", "seq word", "--divergences", "kl reverse_kl"], capture_output=True, text=True
    ).stdout.splitlines()
    assert rows == [
        "teacher-a0.1-s1 teacher 0.1 - 1 - -",
        "student-a0.1-seq-s1 student 0.1 - 1 seq teacher-a0.1-s1",
        "student-a0.1-T2-word-s1 student 0.1 2 1 word teacher-a0.1-s1",
        "student-a0.1-T2-word-reverse_kl-s1 student 0.1 2 1 word teacher-a0.1-s1 reverse_kl",
    ]
    refused = subprocess.run([*command, "--divergences", "kl fkl"], capture_output=True, text=True)
    assert refused.returncode == 2 and "DIVERGENCES value 'fkl'" in refused.stderr


def test_planned_manifests_record_the_divergence_and_its_settings(tmp_path):
    env = {"ALPHAS": "0.0", "TEMPERATURES": "1 4", "DIVERGENCES": "jsd kl", "JSD_BETA": "0.30", "SKEW": "0.2"}
    values = settle(RECIPES["digits"], [], {**env, "RUN_DIR": str(tmp_path)})
    runs = {run.name: run.manifest for run in RECIPES["digits"].grid(values).plan()}
    assert runs["student-a0.0-T4-word-jsd-s1"] == RunManifest(
        "student",
        0.0,
        seed=1,
        temperature=4.0,
        kd_mode="word",
        teacher="teacher-a0.0-s1",
        divergence="jsd",
        transfer_options="JSD_BETA=0.3",
    )
    # kl reads neither beta nor skew: its manifest is today's
    assert runs["student-a0.0-T4-word-s1"] == RunManifest(
        "student", 0.0, seed=1, temperature=4.0, kd_mode="word", teacher="teacher-a0.0-s1"
    )
    write_manifest(tmp_path / "k", runs["student-a0.0-T4-word-s1"])
    assert "divergence" not in json.loads((tmp_path / "k" / "run.json").read_text())
    write_manifest(tmp_path / "j", runs["student-a0.0-T4-word-jsd-s1"])
    assert read_manifest(tmp_path / "j").transfer == "jsd"


def test_tail_and_standardization_reach_the_cache_and_student_records(tmp_path):
    env = {"ALPHAS": "0.1", "TEMPERATURES": "1 64", "TOPK_TAIL": "1", "LOGIT_STANDARDIZATION": "1"}
    _, stages = plan("toy_translation", env, tmp_path)
    records = {s.name: s.settings for s in stages}
    assert records["cache-a0.1-s1"]["TAIL_TEMPERATURES"] == "1 64"
    assert records["cache-a0.1-s1"]["STANDARDIZATION_STATS"] == "1"
    student = records["student-a0.1-T64-word-s1"]
    assert (student["TOPK_TAIL"], student["LOGIT_STANDARDIZATION"]) == ("1", "1")
    _, stages = plan("toy_translation", {**env, "TEACHER_TEMPERATURE": "2.0"}, tmp_path)
    assert {s.name: s.settings for s in stages}["cache-a0.1-s1"]["TAIL_TEMPERATURES"] == "2"


def test_the_dry_run_on_slurm_lists_every_transfer_s_student(tmp_path):
    env = {
        "EXECUTOR": "slurm",
        "DRY_RUN": "1",
        "RUN_DIR": "grid",
        "ALPHAS": "0.0 0.1",
        "TEMPERATURES": "2",
        "DIVERGENCES": "kl reverse_kl",
    }
    result = run_recipe("digits", env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = {line.split()[-1]: line for line in result.stdout.splitlines() if line.startswith("sbatch ")}
    assert sorted(jobs) == sorted(
        [
            "teacher-a0.0-s1",
            "student-a0.0-T2-word-s1",
            "student-a0.0-T2-word-reverse_kl-s1",
            "teacher-a0.1-s1",
            "student-a0.1-T2-word-s1",
            "student-a0.1-T2-word-reverse_kl-s1",
            "diffusion-s1",
            "diffusion-reverse_kl-s1",
            "results",
        ]
    )
    assert "'--dependency=afterok:<teacher-a0.1-s1>'" in jobs["student-a0.1-T2-word-reverse_kl-s1"]
    figure = jobs["diffusion-reverse_kl-s1"]
    assert "<student-a0.0-T2-word-reverse_kl-s1>" in figure and "<student-a0.0-T2-word-s1>" not in figure
    assert "<teacher-a0.0-s1>" in figure
    assert not (tmp_path / "grid").exists()


def test_bad_transfer_settings_are_one_line_before_anything_is_written(tmp_path):
    cases = [
        ("toy_translation", {"DIVERGENCES": "kl forward"}, "DIVERGENCES value 'forward': expected one of kl, "),
        ("toy_translation", {"DIVERGENCES": "jsd jsd"}, "DIVERGENCES 'jsd jsd': a value is repeated"),
        ("toy_translation", {"JSD_BETA": "1"}, "JSD_BETA must be in (0, 1)"),
        ("digits", {"SKEW": "x"}, "SKEW 'x': expected a number"),
        ("digits", {"TEACHER_TEMPERATURE": "-1"}, "TEACHER_TEMPERATURE '-1': KD temperature must be > 0"),
        ("digits", {"LOGIT_STANDARDIZATION": "true"}, "LOGIT_STANDARDIZATION 'true': expected 0 or 1"),
        ("toy_translation", {"TOPK_TAIL": "yes"}, "TOPK_TAIL 'yes': expected 0 or 1"),
    ]
    for recipe, env, needle in cases:
        result = run_recipe(recipe, {**env, "RUN_DIR": "grid"}, cwd=tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], (env, result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_transfer_settings():
    for recipe, names in (
        ("toy_translation", ("DIVERGENCES", "JSD_BETA", "SKEW", "TEACHER_TEMPERATURE", "LOGIT_STANDARDIZATION")),
        ("digits", ("DIVERGENCES", "TEACHER_TEMPERATURE")),
    ):
        text = run_recipe(recipe, {}, "--help", cwd=REPO).stdout
        assert all(f"  {name} " in text for name in names), text
    assert "TOPK_TAIL" in run_recipe("toy_translation", {}, "--help", cwd=REPO).stdout
    assert "TOPK_TAIL" not in run_recipe("digits", {}, "--help", cwd=REPO).stdout


def add(grid, name, manifest, value):
    write_manifest(grid / name, manifest)
    (grid / name / "metrics.json").write_text(json.dumps({"best": {"top1": value}}))


def test_results_writes_one_table_per_transfer(tmp_path):
    grid = tmp_path / "grid"
    scores = {"kl": {1: 80.0, 2: 82.0}, "reverse_kl": {1: 70.0, 2: 74.0}}
    for seed in (1, 2):
        for alpha in (0.0, 0.1):
            teacher = f"teacher-a{alpha}-s{seed}"
            add(grid, teacher, RunManifest("teacher", alpha, seed), 90.0 + seed)
            for divergence, values in scores.items():
                manifest = RunManifest(
                    "student",
                    alpha,
                    seed,
                    3.0,
                    "word",
                    teacher,
                    divergence=None if divergence == "kl" else divergence,
                )
                suffix = "" if divergence == "kl" else f"-{divergence}"
                add(grid, f"student-a{alpha}-T3-word{suffix}-s{seed}", manifest, values[seed] + alpha)
    outcome = results(grid, "--paper", "none", "--metric", "best.top1", "--out", tmp_path / "out" / "results")
    assert outcome.returncode == 0, outcome.stderr
    out = tmp_path / "out"
    for divergence, values in scores.items():
        rows = list(csv.DictReader(io.StringIO((out / f"results-{divergence}.csv").read_text())))
        student = next(r for r in rows if r["role"] == "Student" and r["T"] == "3")
        teacher = next(r for r in rows if r["role"] == "Teacher")
        expected = statistics.mean(values.values()) + 0.1
        assert float(student["α = 0.1"]) == round(expected, 3), student
        assert float(teacher["α = 0.1"]) == 91.5
        assert (out / f"results-{divergence}-verdicts.json").is_file()
        assert f"transfer {divergence}" in (out / f"results-{divergence}.md").read_text()
    combined = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert {r["transfer"] for r in combined} == {"kl", "reverse_kl"}
    assert json.loads((out / "results.json").read_text())["transfers"].keys() == {"kl", "reverse_kl"}
    assert "transfer kl" in outcome.stdout and "transfer reverse_kl" in outcome.stdout


def test_a_grid_of_one_transfer_writes_one_table_as_before(tmp_path):
    grid = tmp_path / "grid"
    add(grid, "teacher-a0.1-s1", RunManifest("teacher", 0.1, 1), 90.0)
    add(
        grid,
        "student-a0.1-T3-word-tvd-s1",
        RunManifest("student", 0.1, 1, 3.0, "word", "teacher-a0.1-s1", divergence="tvd"),
        80.0,
    )
    outcome = results(grid, "--paper", "none", "--metric", "best.top1", "--out", tmp_path / "results")
    assert outcome.returncode == 0, outcome.stderr
    assert (tmp_path / "results.csv").is_file() and not list(tmp_path.glob("results-tvd*"))


@pytest.mark.slow
def test_digits_with_two_transfers_end_to_end(tmp_path):
    env = {
        "RUN_DIR": "grid",
        "SEEDS": "1",
        "EPOCHS": "1",
        "ALPHAS": "0.1",
        "TEMPERATURES": "3",
        "DIFFUSION_TEMPERATURES": "3",
        "DIVERGENCES": "kl reverse_kl",
        "JOBS": "1",
    }
    result = run_recipe("digits", env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    grid = tmp_path / "grid"
    kl, reverse = grid / "student-a0.1-T3-word-s1", grid / "student-a0.1-T3-word-reverse_kl-s1"
    assert "divergence" not in json.loads((kl / "run.json").read_text())
    assert read_manifest(reverse).divergence == "reverse_kl"
    assert "--kd-divergence reverse_kl" in (grid / "logs" / f"{reverse.name}.log").read_text()
    assert "--kd-divergence" not in (grid / "logs" / f"{kl.name}.log").read_text()
    for divergence, run in (("kl", kl), ("reverse_kl", reverse)):
        score = json.loads((run / "metrics.json").read_text())["best"]["top1"]
        rows = list(csv.DictReader(io.StringIO((grid / f"results-{divergence}.csv").read_text())))
        assert float(next(r for r in rows if r["role"] == "Student")["α = 0.1"]) == round(score, 3)
    figures = {
        name: json.loads((grid / name / "diffusion.json").read_text())["models"]
        for name in ("diffusion-s1", "diffusion-reverse_kl-s1")
    }
    assert sorted(figures["diffusion-reverse_kl-s1"]) == ["student T 3 (reverse_kl), teacher α 0.1", "teacher α 0.1"]
    assert sorted(figures["diffusion-s1"]) == ["student T 3, teacher α 0.1", "teacher α 0.1"]
    assert "no run of this grid" not in (grid / "results.md").read_text()


@pytest.mark.slow
def test_toy_translation_with_a_tail_and_standardisation_end_to_end(tmp_path):
    env = {
        "RUN_DIR": "grid",
        "SEEDS": "1",
        "ALPHAS": "0.1",
        "TEMPERATURES": "2",
        "DIVERGENCES": "jsd",
        "JSD_BETA": "0.3",
        "TOPK_TAIL": "1",
        "LOGIT_STANDARDIZATION": "1",
        "JOBS": "1",
    }
    result = run_recipe("toy_translation", env, "--tiny", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    grid = tmp_path / "grid"
    cache = grid / "teacher-a0.1-s1" / "cache-top4"
    fingerprint = json.loads((cache / "train.json").read_text())
    assert (fingerprint["tail_temperatures"], fingerprint["standardization"]) == ([2.0], True)
    assert (cache / "train.log_normalizers.npy").is_file()
    assert (cache / "valid.moments.npy").is_file() and (cache / "valid.standardized_log_normalizers.npy").is_file()
    student = grid / "student-a0.1-T2-word-jsd-s1"
    manifest = read_manifest(student)
    assert (manifest.divergence, manifest.transfer_options) == (
        "jsd",
        "JSD_BETA=0.3 LOGIT_STANDARDIZATION=1 TOPK_TAIL=1",
    )
    config = next(line for line in (grid / "logs" / f"{student.name}.log").read_text().splitlines() if "'kd_" in line)
    for setting in ("'kd_divergence': jsd", "'kd_jsd_beta': 0.3", "'kd_logit_standardization': True"):
        assert setting in config
    assert "'kd_topk_tail': True" in config
    assert (student / "bleu.json").is_file() and (grid / "results.csv").is_file()
