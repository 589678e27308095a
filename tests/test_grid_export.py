"""The recipes' optional EXPORT stages (a CTranslate2 export of every teacher and student, each scored through
CTranslate2) in the plan, under both executors, and lskd-results' deployed columns on hand-made grids."""

import csv
import hashlib
import json
import re
import statistics

import pytest

from lskd_deploy.export import QUANTIZATIONS
from lskd_grid.recipe_settings import settle
from lskd_grid.recipe_table import RECIPES
from lskd_grid.stages import check_records
from recipe_runs import run_recipe as recipe_run
from results_runs import add_run, results

TOY = RECIPES["toy_translation"]


def toy_plan(run_dir, *argv):
    values = settle(TOY, ["--tiny", "--run-dir", str(run_dir), "--alphas", "0.1", "--temperatures", "2", *argv], {})
    return TOY.plan(values)


def run_recipe(name, env, *args, cwd=None):
    return recipe_run(name, {"PYTHONWARNINGS": "ignore", **env}, *args, cwd=cwd)


def test_export_int8_adds_an_export_and_its_evaluation_after_each_models_training(tmp_path):
    stages = toy_plan(tmp_path, "--export", "int8")
    teacher, student = "teacher-a0.1-s1", "student-a0.1-T2-word-s1"
    expected = [
        ("data", ()),
        (teacher, ("data",)),
        (f"eval-{teacher}", (teacher,)),
        (f"export-int8-{teacher}", (teacher,)),
        (f"eval-int8-{teacher}", (f"export-int8-{teacher}",)),
        ("cache-a0.1-s1", (teacher,)),
        (student, ("cache-a0.1-s1",)),
        (f"eval-{student}", (student,)),
        (f"export-int8-{student}", (student,)),
        (f"eval-int8-{student}", (f"export-int8-{student}",)),
        ("results", (f"eval-{teacher}", f"eval-int8-{teacher}", f"eval-{student}", f"eval-int8-{student}")),
    ]
    assert [(s.name, s.after) for s in stages] == expected
    by_name = {s.name: s for s in stages}
    exported = by_name[f"export-int8-{student}"]
    assert exported.done == f"{tmp_path}/{student}/ct2-int8/lskd-export.json"
    assert exported.outputs == (f"{tmp_path}/{student}/ct2-int8",)
    assert dict(exported.settings) == {"QUANTIZATION": "int8"}
    evaluated = by_name[f"eval-int8-{student}"]
    assert evaluated.done == f"{tmp_path}/{student}/bleu-ct2-int8/bleu.json"
    assert dict(evaluated.settings) == {"BEAM": "5", "EVAL_SUBSET": "valid", "QUANTIZATION": "int8"}
    assert exported.kind == evaluated.kind == "eval"  # both take TIME_EVAL on Slurm


def test_no_export_plans_exactly_the_stages_it_planned_before(tmp_path):
    names = [s.name for s in toy_plan(tmp_path)]
    assert not [n for n in names if "int8" in n or n.startswith("export-")]
    assert len(names) == 1 + 3 + 2 + 1  # data; teacher, its eval, cache; student, its eval; results


def test_two_quantisations_each_get_their_own_folders(tmp_path):
    stages = toy_plan(tmp_path, "--export", "int8 float32")
    names = [s.name for s in stages]
    student = "student-a0.1-T2-word-s1"
    assert names[names.index(f"eval-{student}") + 1 :][:4] == [
        f"export-int8-{student}",
        f"eval-int8-{student}",
        f"export-float32-{student}",
        f"eval-float32-{student}",
    ]
    dones = [s.done for s in stages]
    assert len(set(dones)) == len(dones)


def test_a_changed_beam_is_refused_for_the_deployed_evaluations_too(tmp_path):
    (tmp_path / "stages").mkdir()
    for stage in toy_plan(tmp_path, "--export", "int8"):
        (tmp_path / "stages" / f"{stage.name}.json").write_text(stage.record())
    changed = toy_plan(tmp_path, "--export", "int8", "--beam", "2")
    redo = [s.name for s in check_records("toy_translation", str(tmp_path), changed, redo=True)]
    assert "eval-int8-teacher-a0.1-s1" in redo and "export-int8-teacher-a0.1-s1" not in redo


def test_dry_run_on_slurm_lists_the_export_jobs_with_their_dependencies(tmp_path):
    env = {"EXECUTOR": "slurm", "DRY_RUN": "1", "RUN_DIR": "grid", "EXPORT": "int8", "TIME_EVAL": "0:20:00"}
    result = run_recipe("toy_translation", env, "--tiny", "--alphas", "0.1", "--temperatures", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = {line.split()[-1]: line for line in result.stdout.splitlines() if line.startswith("sbatch ")}
    student = "student-a0.1-T2-word-s1"
    assert "'--dependency=afterok:<teacher-a0.1-s1>'" in jobs["export-int8-teacher-a0.1-s1"]
    assert f"'--dependency=afterok:<{student}>'" in jobs[f"export-int8-{student}"]
    assert f"'--dependency=afterok:<export-int8-{student}>'" in jobs[f"eval-int8-{student}"]
    assert "--time=0:20:00" in jobs[f"export-int8-{student}"] and "--time=0:20:00" in jobs[f"eval-int8-{student}"]
    waits = re.search(r"--dependency=afterany:(\S+)'", jobs["results"]).group(1).split(":")
    assert f"<eval-int8-{student}>" in waits and "<eval-int8-teacher-a0.1-s1>" in waits
    assert len(jobs) == 11 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "export, needle",
    [
        ("int8 int9", "EXPORT 'int8 int9': int9 is not a quantisation (expected a list among: "),
        ("int8 int8", "EXPORT 'int8 int8': a quantisation is listed twice"),
    ],
)
def test_a_bad_export_is_refused_in_one_line_before_anything_runs(tmp_path, export, needle):
    result = run_recipe("toy_translation", {"RUN_DIR": "grid", "EXPORT": export}, "--tiny", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr
    if "int9" in export:
        assert all(q in lines[0] for q in QUANTIZATIONS)
    assert list(tmp_path.iterdir()) == []


def write_scores(folder, score, seconds):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bleu.json").write_text(json.dumps({"sacrebleu": {"score": score}, "decode_seconds": seconds}))


# (alpha, T, seed) -> (fairseq score, fairseq seconds, {quantisation: (score, seconds)})
RUNS = {
    (0.0, None, 1): (30.0, 10.0, {"int8": (29.5, 2.0)}),
    (0.0, None, 2): (32.0, 12.0, {"int8": (31.0, 4.0)}),
    (0.1, None, 1): (33.0, 9.0, {"int8": (33.5, 3.0), "float32": (33.0, 4.5)}),
    (0.1, None, 2): (34.0, 8.0, {"int8": (33.0, 2.0)}),
    (0.0, 2.0, 1): (28.0, 6.0, {"int8": (27.0, 1.5)}),
    (0.0, 2.0, 2): (29.0, 6.5, {}),
    (0.1, 2.0, 1): (29.0, 7.0, {"int8": (28.0, 2.0)}),
    (0.1, 2.0, 2): (30.0, 7.5, {"int8": (29.0, 2.5)}),
}


def make_grid(grid, deployed=True):
    for (alpha, temperature, seed), (score, seconds, exports) in RUNS.items():
        run = add_run(grid, alpha, temperature, seed, None, metrics="bleu.json")
        write_scores(run, score, seconds)
        for quantization, (deployed_score, deployed_seconds) in exports.items() if deployed else ():
            write_scores(run / f"bleu-ct2-{quantization}", deployed_score, deployed_seconds)


def expected(alpha, temperature, quantization):
    """(mean deployed score, n, mean speed ratio) of a cell, from RUNS."""
    runs = [v for (a, t, _), v in RUNS.items() if a == alpha and t == temperature and quantization in v[2]]
    scores = [exports[quantization][0] for _, _, exports in runs]
    ratios = [seconds / exports[quantization][1] for _, seconds, exports in runs]
    return statistics.fmean(scores), len(scores), statistics.fmean(ratios)


def test_results_show_the_deployed_score_and_speed_ratio_beside_each_cell(tmp_path):
    grid = tmp_path / "grid"
    make_grid(grid)
    outcome = results(grid, "--paper", "none", "--metric", "sacrebleu.score", "--out", tmp_path / "r")
    assert outcome.returncode == 0, outcome.stderr
    mean, n, ratio = expected(0.0, None, "int8")
    assert n == 2 and ratio == pytest.approx((10 / 2 + 12 / 4) / 2)
    teacher_row = next(line for line in outcome.stdout.splitlines() if line.startswith("| Teacher"))
    assert f"31.000 ± 1.414 (2) · int8 {mean:.3f}, ×{ratio:.2f} |" in teacher_row
    float32, int8 = expected(0.1, None, "float32"), expected(0.1, None, "int8")
    both = f"· float32 {float32[0]:.3f}, ×{float32[2]:.2f} · int8 {int8[0]:.3f}, ×{int8[2]:.2f} |"
    assert both in teacher_row  # quantisations in name order
    assert "whole decoding command" in outcome.stdout

    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    student = next(r for r in rows if r["role"] == "Student")
    mean, n, ratio = expected(0.0, 2.0, "int8")
    assert n == 1
    assert student["α = 0.0 ct2 int8"] == f"{mean:.3f}" and student["α = 0.0 ct2 int8 n"] == "1"
    assert student["α = 0.0 ct2 int8 speed ratio (whole command)"] == f"{ratio:.3f}"
    assert student["α = 0.1 ct2 float32"] == "" and student["α = 0.0 sd"] != ""

    document = json.loads((tmp_path / "r.json").read_text())
    assert document["deployed"] == ["float32", "int8"]
    cell = next(c for c in document["cells"] if c["alpha"] == 0.1 and c["T"] == 2.0)
    mean, n, ratio = expected(0.1, 2.0, "int8")
    assert cell["deployed"]["int8"]["mean"] == pytest.approx(mean) and cell["deployed"]["int8"]["n"] == n
    assert cell["deployed"]["int8"]["speed_ratio"] == pytest.approx(ratio)
    assert cell["mean"] == pytest.approx(29.5)  # the fairseq cell itself


def test_the_verdicts_read_the_fairseq_scores_whatever_was_deployed(tmp_path):
    plain, deployed = tmp_path / "plain", tmp_path / "deployed"
    make_grid(plain, deployed=False)
    make_grid(deployed)
    for grid in (plain, deployed):
        outcome = results(grid, "--paper", "none", "--metric", "sacrebleu.score", "--out", tmp_path / grid.name)
        assert outcome.returncode == 0, outcome.stderr
    verdicts = [json.loads((tmp_path / f"{name}-verdicts.json").read_text()) for name in ("plain", "deployed")]
    assert [{**v, "grid": None} for v in verdicts][0] == {**verdicts[1], "grid": None} and verdicts[0]["verdicts"]
    assert "ct2" not in (tmp_path / "plain.csv").read_text() and "deployed" not in json.loads(
        (tmp_path / "plain.json").read_text()
    )


@pytest.mark.slow
def test_toy_grid_with_export_int8_exports_scores_and_reports_each_model(tmp_path):
    run_dir = tmp_path / "toy"
    env = {"RUN_DIR": str(run_dir), "ALPHAS": "0.1", "TEMPERATURES": "2", "MAX_UPDATE": "8", "EXPORT": "int8"}
    result = run_recipe("toy_translation", env, "--tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    started = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("start ")]
    assert started == [s.name for s in toy_plan(run_dir, "--export", "int8")]
    rows = {r["role"]: r for r in csv.DictReader((run_dir / "results.csv").open())}
    for run, role in (("teacher-a0.1-s1", "Teacher"), ("student-a0.1-T2-word-s1", "Student")):
        folder = run_dir / run
        manifest = json.loads((folder / "ct2-int8" / "lskd-export.json").read_text())
        checkpoint = (folder / "checkpoints" / "checkpoint_best.pt").read_bytes()
        assert manifest["source_checkpoint_sha256"] == hashlib.sha256(checkpoint).hexdigest()
        assert manifest["quantization"] == "int8"
        fairseq = json.loads((folder / "bleu.json").read_text())
        deployed = json.loads((folder / "bleu-ct2-int8" / "bleu.json").read_text())
        assert (deployed["engine"], deployed["compute_type"]) == ("ctranslate2", "int8")
        assert deployed["subset"] == fairseq["subset"] == "valid"
        assert rows[role]["α = 0.1 ct2 int8"] == f"{deployed['sacrebleu']['score']:.3f}"
        ratio = fairseq["decode_seconds"] / deployed["decode_seconds"]
        assert rows[role]["α = 0.1 ct2 int8 speed ratio (whole command)"] == f"{ratio:.3f}"
    again = run_recipe("toy_translation", env, "--tiny")
    assert again.returncode == 0 and not [line for line in again.stdout.splitlines() if line.startswith("start ")]
    more = run_recipe("toy_translation", {**env, "EXPORT": "int8 float32"}, "--tiny")
    assert more.returncode == 0, more.stdout + more.stderr
    started = [line.split()[1] for line in more.stdout.splitlines() if line.startswith("start ")]
    assert started == [
        f"{kind}-float32-{run}" for run in ("teacher-a0.1-s1", "student-a0.1-T2-word-s1") for kind in ("export", "eval")
    ] + ["results"]
    student = next(r for r in csv.DictReader((run_dir / "results.csv").open()) if r["role"] == "Student")
    deployed = json.loads((run_dir / "student-a0.1-T2-word-s1" / "bleu-ct2-float32" / "bleu.json").read_text())
    assert student["α = 0.1 ct2 float32"] == f"{deployed['sacrebleu']['score']:.3f}"
