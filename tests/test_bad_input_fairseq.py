"""Bad input to fairseq-train with the plugin: one ``lskd error:`` line, a non-zero exit, nothing in --save-dir.

Each case reproduces an input that used to train on silently, crash at the first step (leaving ``crash.pt``)
or print a traceback. fairseq creates --save-dir (empty) before the plugin runs, so "nothing written" means
the folder is absent or empty.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import lskd_fairseq  # noqa: F401  (allow-lists what fairseq checkpoints need)
from bad_input_helpers import TORCH_UNSAFE_ADVICE
from environment import BIN_DIR
from fixtures.fairseq_runs import (
    PLUGIN_DIR,
    TINY_TRANSFORMER,
    TRAINING,
    build_training,
    dump_teacher,
    fairseq_cli,
    train,
)
from lskd_fairseq.checkpoints import DICTIONARIES_KEY

KD = ["--task", "translation_kd", "--criterion", "word_kd", "--kd-temperature", "2", "--kd-weight", "0.9"]


def refused(result: subprocess.CompletedProcess, save_dir, *fragments) -> str:
    assert result.returncode != 0, result.stdout[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lskd error:"), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0]
    assert not save_dir.exists() or not any(save_dir.iterdir()), list(save_dir.iterdir())
    return lines[0]


def student(data, tmp_path, *extra, env=None):
    save_dir = tmp_path / "save"
    command = [data, *TINY_TRANSFORMER, *TRAINING, "--save-dir", save_dir, *KD, "--max-update", "2", *extra]
    return save_dir, fairseq_cli("fairseq-train", *command, check=False, env=env)


# 1. The teacher's dictionaries are checked from the checkpoint itself.


@pytest.fixture(scope="module")
def moved_teacher(tmp_path_factory, toy_bin):
    """A teacher whose training data folder is gone after training (checkpoint copied, data moved)."""
    data = shutil.copytree(toy_bin, tmp_path_factory.mktemp("teacher-data") / "bin")
    save_dir = tmp_path_factory.mktemp("moved-teacher")
    train(data, save_dir, "--criterion", "label_smoothed_teacher", "--max-update", "2", "--disable-validation")
    shutil.rmtree(data)
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def unrecorded_teacher(moved_teacher, tmp_path_factory):
    """The same teacher as one trained without the plugin's criteria writes it: no recorded dictionaries."""
    state = torch.load(moved_teacher, map_location="cpu", weights_only=True)
    del state["task_state"][DICTIONARIES_KEY]
    path = tmp_path_factory.mktemp("unrecorded") / "checkpoint.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def permuted_bin(tmp_path_factory, toy_text, toy_bin):
    """The toy data binarised with a same-size dictionary whose two most frequent words swapped places."""
    lines = (toy_bin / "dict.src.txt").read_text().splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    folder = tmp_path_factory.mktemp("permuted")
    (folder / "dict.txt").write_text("".join(lines))
    dest = folder / "bin"
    fairseq_cli(
        "fairseq-preprocess",
        *("--source-lang", "src", "--target-lang", "tgt"),
        *("--srcdict", folder / "dict.txt", "--tgtdict", folder / "dict.txt"),
        *("--trainpref", toy_text / "train", "--validpref", toy_text / "valid"),
        *("--destdir", dest, "--workers", "1"),
    )
    return dest


def test_teacher_checkpoint_records_its_dictionaries(teacher_checkpoint, toy_bin):
    state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=True)
    symbols = [line.split(" ")[0] for line in (toy_bin / "dict.tgt.txt").read_text().splitlines()]
    recorded = state["task_state"][DICTIONARIES_KEY]
    assert recorded["target"][4:] == recorded["source"][4:] == symbols  # after <s> <pad> </s> <unk>


def test_permuted_dictionary_refused_when_teacher_data_is_gone(moved_teacher, permuted_bin, tmp_path):
    save_dir, result = student(permuted_bin, tmp_path, "--teacher-path", moved_teacher)
    refused(
        result, save_dir, "trained with another source dictionary", "(192 vs 192 symbols; first difference at index 4"
    )


def test_recorded_teacher_accepted_on_its_dictionaries_when_data_is_gone(moved_teacher, toy_bin):
    task, _, _ = build_training(toy_bin, *KD, "--teacher-path", moved_teacher)
    assert task.teacher is not None


def test_unrecorded_teacher_without_data_is_refused_naming_the_override(
    unrecorded_teacher, permuted_bin, toy_bin, tmp_path
):
    save_dir, result = student(permuted_bin, tmp_path, "--teacher-path", unrecorded_teacher)
    refused(result, save_dir, "cannot be checked", "--teacher-dict-dir")
    save_dir, result = student(
        permuted_bin, tmp_path, "--teacher-path", unrecorded_teacher, "--teacher-dict-dir", toy_bin
    )
    refused(result, save_dir, "first difference at index 4")
    task, _, _ = build_training(toy_bin, *KD, "--teacher-path", unrecorded_teacher, "--teacher-dict-dir", toy_bin)
    assert task.teacher is not None


# 2. Temperatures whose T²-scaled loss leaves float32 are refused at start.


@pytest.mark.parametrize(
    "temperature, message",
    [("1e20", "must be <= 1e+12"), ("inf", "finite number, got inf"), ("nan", "finite number, got nan")],
)
def test_unbounded_temperature_refused(toy_bin, teacher_checkpoint, tmp_path, temperature, message):
    save_dir, result = student(toy_bin, tmp_path, "--teacher-path", teacher_checkpoint, "--kd-temperature", temperature)
    refused(result, save_dir, message)


# 3. and 5. Teacher caches: subsets from one teacher, damaged files refused by name.


@pytest.fixture(scope="module")
def cache(tmp_path_factory, toy_bin, teacher_checkpoint):
    out = tmp_path_factory.mktemp("cache")
    for subset in ("train", "valid"):
        dump_teacher(toy_bin, teacher_checkpoint, out, "--subset", subset, "--topk", 4, "--dtype", "fp32")
    return out


def with_valid_from(cache, tmp_path, toy_bin, teacher, topk, dtype):
    mixed = shutil.copytree(cache, tmp_path / "mixed")
    for path in mixed.glob("valid.*"):
        path.unlink()
    dump_teacher(toy_bin, teacher, mixed, "--subset", "valid", "--topk", topk, "--dtype", dtype)
    return mixed


def test_valid_cache_from_another_teacher_refused(cache, toy_bin, moved_teacher, tmp_path):
    mixed = with_valid_from(cache, tmp_path, toy_bin, moved_teacher, 4, "fp32")
    save_dir, result = student(toy_bin, tmp_path, "--teacher-cache", mixed)
    refused(result, save_dir, "the 'valid' and 'train' caches differ in teacher_checkpoint_sha256")


def test_valid_cache_with_other_k_and_dtype_refused(cache, toy_bin, teacher_checkpoint, tmp_path):
    mixed = with_valid_from(cache, tmp_path, toy_bin, teacher_checkpoint, 2, "fp16")
    save_dir, result = student(toy_bin, tmp_path, "--teacher-cache", mixed)
    line = refused(result, save_dir, "topk (valid: 2, train: 4)", "dtype (valid: fp16, train: fp32)")
    assert "teacher_checkpoint_sha256" not in line


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def index_out_of_range(path):
    indices = np.load(path)
    indices[3, 1] = 10_000
    np.save(path, indices)


def nan_logit(path):
    logits = np.load(path)
    logits[5, 0] = np.nan
    np.save(path, logits)


@pytest.mark.parametrize(
    "file, damage, message",
    [
        ("train.indices.npy", truncate, "train.indices.npy cannot be read (mmap length is greater than file size)"),
        ("train.json", truncate, "train.json is damaged: not valid JSON"),
        ("valid.indices.npy", index_out_of_range, "valid.indices.npy is damaged: row 3 holds token ids"),
        ("valid.logits.npy", nan_logit, "valid.logits.npy is damaged: row 5 holds non-finite logits"),
    ],
)
def test_damaged_cache_file_refused_by_name(cache, toy_bin, tmp_path, file, damage, message):
    damaged = shutil.copytree(cache, tmp_path / "damaged")
    damage(damaged / file)
    save_dir, result = student(toy_bin, tmp_path, "--teacher-cache", damaged)
    line = refused(result, save_dir, message)
    if damage is index_out_of_range:
        assert "outside the target vocabulary [0, 192)" in line


# 4. and 8. Settings that used to fail only at the first step, or were silently ignored.


def test_topk_larger_than_vocabulary_names_flag_and_size(toy_bin, teacher_checkpoint, tmp_path):
    save_dir, result = student(toy_bin, tmp_path, "--teacher-path", teacher_checkpoint, "--kd-topk", "500")
    refused(result, save_dir, "--kd-topk must be in [1, 192] (the target vocabulary has 192 symbols), got 500")


def test_word_kd_without_translation_kd(toy_bin, tmp_path):
    save_dir = tmp_path / "save"
    result = train(toy_bin, save_dir, "--criterion", "word_kd", "--max-update", "2", check=False)
    refused(result, save_dir, "criterion word_kd needs --task translation_kd", "task is translation")


def test_a_model_with_an_adaptive_softmax_is_refused_before_training(toy_bin, tmp_path):
    """The criteria read full-vocabulary logits, which an adaptive softmax's decoder does not give."""
    save_dir = tmp_path / "save"
    extra = ["--criterion", "label_smoothed_teacher", "--adaptive-softmax-cutoff", "20,40", "--max-update", "2"]
    result = train(toy_bin, save_dir, *extra, check=False)
    refused(result, save_dir, "--adaptive-softmax-cutoff: the lskd criteria need", "train without")


def test_translation_kd_without_a_teacher(toy_bin, tmp_path):
    save_dir, result = student(toy_bin, tmp_path)
    refused(result, save_dir, "task translation_kd needs a teacher: give --teacher-path", "--teacher-cache")


def test_kd_topk_with_a_cache_is_refused_not_ignored(cache, toy_bin, tmp_path):
    save_dir, result = student(toy_bin, tmp_path, "--teacher-cache", cache, "--kd-topk", "2")
    refused(result, save_dir, "--kd-topk 2 cuts a live teacher", "drop --kd-topk")


def test_rank_of_a_torchrun_launch_that_fairseq_runs_alone_is_refused(toy_bin, teacher_checkpoint, tmp_path):
    """What torchrun gives each of its 2 processes; on CPU fairseq keeps --distributed-world-size 1."""
    launched = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "WORLD_SIZE": "2",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29400",
    }
    save_dir, result = student(toy_bin, tmp_path, "--teacher-path", teacher_checkpoint, "--cpu", env=launched)
    refused(result, save_dir, "WORLD_SIZE=2", "--distributed-backend gloo", "--distributed-no-spawn")


# 7. Messages that say what happened.


@pytest.fixture(scope="module")
def bad_teachers(tmp_path_factory, teacher_checkpoint):
    folder = tmp_path_factory.mktemp("bad-teachers")
    state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=True)
    torch.save({**state, "hook": os.getcwd}, folder / "unsafe.pt")
    torch.save({"arch": "resnet18", "state_dict": {"fc.weight": torch.zeros(2, 2)}}, folder / "vision.pt")
    shutil.copy(teacher_checkpoint, folder / "checkpoint_best.pt")
    return folder


@pytest.mark.parametrize(
    "name, message, not_said",
    [
        ("unsafe.pt", "was refused as unsafe: it pickles posix.getcwd", TORCH_UNSAFE_ADVICE),
        ("vision.pt", "is not a fairseq checkpoint: it holds the keys arch, state_dict", "best_loss"),
        (".", "is a directory; expected a checkpoint file (it holds checkpoint_best.pt", "no such file"),
    ],
)
def test_bad_teacher_file_says_what_is_wrong(bad_teachers, toy_bin, tmp_path, name, message, not_said):
    save_dir, result = student(toy_bin, tmp_path, "--teacher-path", bad_teachers / name)
    refused(result, save_dir, message)
    assert not_said not in result.stderr


def test_error_is_not_buried_under_third_party_warnings(toy_bin, tmp_path):
    """In a normal shell (no PYTHONWARNINGS) only fairseq's own import-time notice precedes the plugin."""
    shell = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    command = [BIN_DIR / "fairseq-train", toy_bin, *TINY_TRANSFORMER, *TRAINING, "--save-dir", tmp_path / "save", *KD]
    command += ["--teacher-path", tmp_path / "absent.pt", "--user-dir", PLUGIN_DIR]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, env=shell)  # a fresh interpreter
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    before_plugin = ["`torch.jit.script` is deprecated", "warnings.warn("]
    lines = [line for line in lines if not any(notice in line for notice in before_plugin)]
    expected = f"lskd error: checkpoint {tmp_path / 'absent.pt'} does not exist; expected a checkpoint file"
    assert result.returncode != 0 and lines == [expected], result.stderr
