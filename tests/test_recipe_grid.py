"""The recipes' settings and grid plan (lskd_grid.grid, recipe_settings, recipe_table): the runs a grid plans and
the manifests they will record, flags and environment, and one-line errors, exit status 2, before anything is
written, for every recipe. Nothing here trains."""

import re
import subprocess

import pytest

from environment import PYTHON
from lskd.errors import InvalidConfig
from lskd_grid.grid import Grid
from lskd_grid.recipe_settings import settle
from lskd_grid.recipe_table import RECIPES
from lskd_grid.runs import RunManifest
from recipe_runs import run_recipe

RECIPE_SCRIPTS = [
    "toy_translation",
    "iwslt14_en_de",
    "iwslt14_de_en",
    "iwslt_en_ru",
    "digits",
    "cub",
    "imagenet",
    "demo",
]


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    return lines[0]


def test_plan_names_every_run_and_links_each_student_to_the_teacher_of_its_seed():
    grid = Grid.parse("0.0 0.05", "1 2.5", "1 3", "word seq seq+word")
    runs = {run.name: run.manifest for run in grid.plan("bleu.json")}
    teachers = ["teacher-a0.0-s1", "teacher-a0.05-s1", "teacher-a0.0-s3", "teacher-a0.05-s3"]
    assert [name for name, m in runs.items() if m.kind == "teacher"] == teachers
    assert runs["teacher-a0.05-s3"] == RunManifest("teacher", 0.05, seed=3, metrics="bleu.json")
    assert runs["student-a0.05-T2.5-word-s3"] == RunManifest(
        "student", 0.05, seed=3, temperature=2.5, kd_mode="word", teacher="teacher-a0.05-s3", metrics="bleu.json"
    )
    assert runs["student-a0.0-seq-s1"] == RunManifest(
        "student", 0.0, seed=1, kd_mode="seq", teacher="teacher-a0.0-s1", metrics="bleu.json"
    )
    assert runs["student-a0.0-T1-seq+word-s3"].teacher == "teacher-a0.0-s3"
    # per teacher: 2 word + 1 seq + 2 seq+word students
    assert len(runs) == 4 * (1 + 2 + 1 + 2)
    for name, manifest in runs.items():
        if manifest.kind == "student":
            teacher = runs[manifest.teacher]
            assert (teacher.alpha, teacher.seed) == (manifest.alpha, manifest.seed), name


def test_plan_order_is_each_teacher_then_its_students():
    kinds = [run.manifest.kind for run in Grid.parse("0.1", "1 2", "1 2").plan()]
    assert kinds == ["teacher", "student", "student"] * 2


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--alphas", "0.0 1.0"], "ALPHAS value '1.0': label smoothing must be in [0, 1)"),
        (["--alphas", "0.1 0.10"], "ALPHAS '0.1 0.10': two values are the same number"),
        (["--alphas", "x"], "ALPHAS value 'x': expected a label smoothing"),
        (["--temperatures", "2 0"], "TEMPERATURES value '0': KD temperature must be > 0"),
        (["--temperatures", "nan"], "TEMPERATURES value 'nan'"),
        (["--seeds", "1 -2"], "SEEDS value '-2': expected an integer >= 0"),
        (["--seeds", ""], "SEEDS is empty"),
        (["--kd-modes", "word sentence"], "KD_MODES value 'sentence': expected one of word, seq, seq+word"),
    ],
)
def test_grid_plan_command_refuses_a_bad_grid_in_one_line(args, needle, tmp_path):
    command = [str(PYTHON), "-m", "lskd_grid.grid", "plan", "--alphas", "0.1", "--temperatures", "1", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert needle in one_line_error(result) and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_grid_plan_command_prints_one_row_per_run():
    command = [
        str(PYTHON),
        "-m",
        "lskd_grid.grid",
        "plan",
        "--alphas",
        "0.25",
        "--temperatures",
        "64",
        "--seeds",
        "7",
        "--kd-modes",
        "seq word",
    ]
    rows = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    assert rows == [
        "teacher-a0.25-s7 teacher 0.25 - 7 - -",
        "student-a0.25-seq-s7 student 0.25 - 7 seq teacher-a0.25-s7",
        "student-a0.25-T64-word-s7 student 0.25 64 7 word teacher-a0.25-s7",
    ]


def test_a_flag_wins_over_the_environment_and_the_profile_sets_defaults():
    toy = RECIPES["toy_translation"]
    values = settle(toy, ["--alphas", "0.2", "--tiny"], {"ALPHAS": "0.1", "MAX_UPDATE": "9"})
    assert values["ALPHAS"] == "0.2" and values["PROFILE"] == "tiny" and values["MAX_UPDATE"] == "9"
    assert values["RUN_DIR"] == "runs/toy_translation-tiny" and values["DATA_DIR"] == "runs/toy_translation-tiny/data"
    assert (
        values["TOY_TRAIN"] == "400" and values["EVAL_SUBSET"] == "valid" and values["BLEU_METRIC"] == "sacrebleu.score"
    )
    default = settle(toy, [], {})
    assert (default["PROFILE"], default["MAX_UPDATE"], default["GPUS"], default["SEEDS"], default["KD_MODES"]) == (
        "toy",
        "200",
        "0",
        "1",
        "word",
    )
    iwslt = settle(RECIPES["iwslt14_en_de"], ["--run-dir=/x"], {})
    assert (iwslt["RUN_DIR"], iwslt["DATA_DIR"], iwslt["BLEU_METRIC"], iwslt["JOBS"]) == (
        "/x",
        "/x/data",
        "tokenized_bleu.score",
        "1",
    )


def test_student_label_smoothing_takes_the_cores_range():
    toy = RECIPES["toy_translation"]
    assert settle(toy, ["--student-ls", "0.995"], {})["STUDENT_LS"] == "0.995"
    with pytest.raises(InvalidConfig, match=r"STUDENT_LS '1': label smoothing must be in \[0, 1\)"):
        settle(toy, ["--student-ls", "1"], {})


HELP_SETTINGS = "Settings: environment variable NAME, or flag --name VALUE (the flag wins). Default in parentheses"
HELP_END = """
Every setting is checked before anything is written: a bad value stops the recipe with one line and
exit status 2. Re-running resumes: finished stages are skipped (their output exists), each for the
settings it ran with (RUN_DIR/stages/<stage>.json; other settings are refused unless REDO_CHANGED=1).
"""
# Where the recipe's profiles differ from its paper defaults, the settings header names them.
PROFILES_SHOWN = {
    "toy_translation": "toy/tiny",
    "iwslt14_en_de": "tiny",
    "iwslt14_de_en": "tiny",
    "iwslt_en_ru": "tiny",
}


@pytest.mark.parametrize("name", RECIPE_SCRIPTS)
def test_every_recipe_has_help_listing_each_setting(name):
    result = run_recipe(name, {}, "--help")
    assert result.returncode == 0 and result.stderr == ""
    tiny = " [--tiny]" if name in PROFILES_SHOWN else ""
    assert result.stdout.startswith(f"Usage: bash recipes/{name}.sh{tiny} [--NAME VALUE ...] [--help]\n")
    profiles = f"; [{PROFILES_SHOWN[name]}] where a profile differs" if name in PROFILES_SHOWN else ""
    assert f"\n\n{HELP_SETTINGS}{profiles}:\n" in result.stdout and result.stdout.endswith(HELP_END)
    for setting in [*(setting.name for setting in RECIPES[name].settings), "PYTHON"]:
        assert re.search(rf"^  {setting} +\S", result.stdout, re.M), setting


def test_help_shows_each_profiles_default_beside_the_papers():
    toy = run_recipe("toy_translation", {}, "--help").stdout.splitlines()
    assert "  MAX_UPDATE             updates per model (300000; [toy] 200; [tiny] 40)" in toy
    assert "  TOY_TRAIN              training pairs of the corpus (4000; [toy] 2000; [tiny] 400)" in toy
    iwslt = run_recipe("iwslt14_en_de", {}, "--help").stdout.splitlines()
    assert "  MAX_UPDATE             updates per model (300000; [tiny] 40)" in iwslt


def test_the_demos_help_in_full():
    result = run_recipe("demo", {}, "--help")
    assert result.stdout == (
        "Usage: bash recipes/demo.sh [--NAME VALUE ...] [--help]\n"
        "make demo: the paper's experiment end to end on embedded data, on CPU, through the recipes users run\n"
        "(toy translation, then digits); finished stages are reused, so a second run only prints.\n"
        "\n"
        f"{HELP_SETTINGS}:\n"
        "  DEMO_DIR           where both grids are written (demo-runs)\n"
        "  DEMO_TEMPERATURES  student temperatures of both grids; add 2 and 64 for the paper's grid ('1 3')\n"
        "  DEMO_SEEDS         seeds of the translation grid (about 2 minutes a seed on 2 cores) ('1 2 3')\n"
        "  DEMO_DIGITS_SEEDS  seeds of the digits grid (about 35 s a seed): enough for mean +- sd ('1 2 3')\n"
        "  DEMO_KD_MODES      translation students; add seq for sequence-level KD (needs lskd-distill-corpus) (word)\n"
        "  DEMO_EXPORT        EXPORT of the translation grid, e.g. int8: each model's CTranslate2 export and its BLEU"
        " and speed beside the table's (about 15 s a model on 2 cores: 2-5 minutes for the 18 models) ('')\n"
        "  DEMO_SIZE          full, or smallest (the CI setting: minutes less, numbers meaningless) (full)\n"
        "  PYTHON             interpreter with lskd (REPO/.venv/bin/python when it exists; environment only)\n"
        f"{HELP_END}"
    )


BAD_SETTINGS = [
    ("toy_translation", {"ALPHAS": "0.0 1.5"}, [], "toy_translation: error: ALPHAS value '1.5'"),
    ("toy_translation", {}, ["--seeds", "1 one"], "SEEDS value 'one'"),
    ("toy_translation", {"KD_MODES": "words"}, [], "KD_MODES value 'words'"),
    ("toy_translation", {"STUDENT_LS": "1"}, [], "STUDENT_LS '1': label smoothing must be in [0, 1)"),
    ("toy_translation", {}, ["--fast"], "unknown argument '--fast'"),
    ("iwslt_en_ru", {"ARCHIVE": "/nonexistent/en-ru.tgz"}, [], "ARCHIVE '/nonexistent/en-ru.tgz': no such file"),
    ("iwslt_en_ru", {"TEMPERATURES": "1 0"}, [], "TEMPERATURES value '0'"),
    ("iwslt_en_ru", {"GPUS": "two"}, [], "GPUS 'two': expected an integer >= 0"),
    ("iwslt_en_ru", {"FP16": "1", "GPUS": "0"}, [], "FP16=1 with GPUS=0"),
    ("iwslt_en_ru", {"PROFILE": "huge"}, [], "PROFILE 'huge': expected paper or tiny"),
    ("iwslt_en_ru", {"KD_WEIGHT": "1.5"}, [], "KD_WEIGHT '1.5': KD weight must be in [0, 1]"),
    ("iwslt14_de_en", {"JOBS": "0"}, ["--tiny"], "JOBS '0': expected an integer >= 1"),
    ("digits", {"SEEDS": "1 1"}, [], "SEEDS '1 1': a value is repeated"),
    ("digits", {}, ["--epochs", "0"], "EPOCHS '0': expected an integer >= 1"),
    ("cub", {}, ["--data"], "cub: error: --data needs a value"),
    ("cub", {}, [], "DATA is required"),
    ("imagenet", {"DATA": "/nonexistent"}, [], "DATA '/nonexistent': no such folder"),
    ("demo", {"DEMO_TEMPERATURES": "1 2"}, [], "must include 1 and 3"),
    ("demo", {"DEMO_SEEDS": "0.5"}, [], "DEMO_SEEDS value '0.5'"),
]


@pytest.mark.parametrize("name, env, args, needle", BAD_SETTINGS)
def test_bad_settings_fail_with_one_line_before_writing(name, env, args, needle, tmp_path):
    run_dir = tmp_path / "run"
    result = run_recipe(name, {"RUN_DIR": str(run_dir), "DEMO_DIR": str(run_dir), **env}, *args, cwd=tmp_path)
    assert needle in one_line_error(result) and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_seq_modes_need_the_distillation_command(tmp_path, monkeypatch):
    monkeypatch.setattr("lskd_grid.recipe_table.distill_command", lambda: "")
    with pytest.raises(InvalidConfig, match="KD_MODES 'word seq': seq needs lskd-distill-corpus"):
        settle(RECIPES["toy_translation"], ["--kd-modes", "word seq"], {})
    assert settle(RECIPES["demo"], [], {})["DEMO_KD_MODES"] == "word"


def test_the_demo_trains_three_seeds_of_both_grids_on_the_cheaper_toy_corpus():
    demo = settle(RECIPES["demo"], [], {})
    assert (demo["DEMO_SEEDS"], demo["DEMO_DIGITS_SEEDS"], demo["DEMO_TEMPERATURES"]) == ("1 2 3", "1 2 3", "1 3")
    toy = settle(RECIPES["toy_translation"], [], {})
    assert (toy["TOY_TRAIN"], toy["TOY_VALID"], toy["TOY_TEST"], toy["MAX_UPDATE"]) == ("2000", "200", "200", "200")
