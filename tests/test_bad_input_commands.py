"""Inputs that used to end in a traceback or a misleading message, now one line naming the real problem,
before anything is written: ``lskd-dump-teacher --out FILE``, ``lskd-evaluate`` with a read-only ``--out``,
a vision or unsafe ``--path``, or a short ``--hypotheses`` file; a fairseq checkpoint given to lskd-vision;
an unsafe ``--path`` inside ``fairseq-generate``."""

import argparse
import os
import subprocess
import sys

import pytest
import torch

from bad_input_helpers import TORCH_UNSAFE_ADVICE, read_only, without_write_override
from fixtures.fairseq_runs import fairseq_cli
from lskd_fairseq.cli.dump_teacher import main as dump_main
from lskd_nmt.evaluate import main as evaluate_main
from lskd_vision.models import build_model


def one_line_error(capsys, main, argv, prog) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(map(str, argv)))
    text = capsys.readouterr().err
    assert exit_info.value.code == 2 and text.startswith(f"{prog}: error: ") and text.count("\n") == 1, text
    return text


@pytest.fixture
def checkpoints(tmp_path):
    """A vision checkpoint, a fairseq-shaped one, and a fairseq-shaped one that pickles a function."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, folder / "vision.pt")
    fairseq_like = {"args": argparse.Namespace(arch="transformer"), "model": {"w": torch.zeros(2)}}
    torch.save(fairseq_like, folder / "fairseq.pt")
    torch.save({**fairseq_like, "hook": os.getcwd}, folder / "unsafe.pt")
    return folder


@pytest.fixture
def dictionaries(tmp_path):
    """A data folder with only the dictionaries: enough for the refusals that precede any decoding."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for lang in ("src", "tgt"):
        (folder / f"dict.{lang}.txt").write_text("a 5\nb 4\n")
    return folder


def test_dump_teacher_out_naming_a_file_is_refused(tmp_path, capsys, checkpoints, dictionaries):
    out = tmp_path / "cache.npy"
    out.write_text("mine")
    argv = [dictionaries, "--teacher-path", checkpoints / "fairseq.pt", "--out", out]
    text = one_line_error(capsys, dump_main, argv, "lskd-dump-teacher")
    assert f"--out {out} is a file; expected a folder" in text
    assert out.read_text() == "mine"


EVALUATE = ["--source-lang", "src", "--target-lang", "tgt", "--profile", "modern", "--subword", "none"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("vision.pt", "is not a fairseq checkpoint: it holds the keys arch, state_dict"),
        ("unsafe.pt", "was refused as unsafe: it pickles posix.getcwd"),
    ],
)
def test_evaluate_refuses_a_checkpoint_fairseq_generate_cannot_use(
    tmp_path, capsys, checkpoints, dictionaries, name, message
):
    out = tmp_path / "run" / "bleu.json"
    argv = [dictionaries, *EVALUATE, "--out", out, "--path", checkpoints / name]
    text = one_line_error(capsys, evaluate_main, argv, "lskd-evaluate")
    assert f"--path {checkpoints / name} {message}" in text and TORCH_UNSAFE_ADVICE not in text
    assert not out.parent.exists()


def test_evaluate_refuses_a_read_only_out_folder(tmp_path, dictionaries):
    hypotheses = tmp_path / "hyp.txt"
    hypotheses.write_text("a b\n")
    folder = tmp_path / "read-only"
    folder.mkdir()
    read_only(folder)
    command = [sys.executable, "-m", "lskd_nmt.evaluate", dictionaries, *EVALUATE, "--hypotheses", hypotheses]
    command += ["--out", folder / "bleu.json"]
    result = subprocess.run(without_write_override(list(map(str, command))), capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"lskd-evaluate: error: --out {folder} is not writable: Permission denied\n"
    assert list(folder.iterdir()) == []


def test_a_short_hypothesis_file_is_named_not_the_references(tmp_path, capsys, toy_bin, toy_text):
    """The test subset has 80 sentences and so do the references; the hypotheses have 3 lines."""
    hypotheses = tmp_path / "hyp.txt"
    hypotheses.write_text("a\nb\nc\n")
    out = tmp_path / "run" / "bleu.json"
    argv = [toy_bin, *EVALUATE, "--hypotheses", hypotheses, "--references", toy_text / "test.tgt", "--out", out]
    text = one_line_error(capsys, evaluate_main, argv, "lskd-evaluate")
    assert f"--hypotheses {hypotheses}: 3 hypotheses, expected 80 (one per test sentence of {toy_bin})" in text
    assert "--references" not in text
    assert not (out.parent / "test.hyp.detok").exists() and not out.exists()


def test_vision_names_a_fairseq_checkpoint_as_such(tmp_path, checkpoints):
    """A fresh interpreter: this one imported the fairseq plugin, which allow-lists fairseq's config type."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lskd_vision.cli", "train-student", "--dataset", "digits", "-T", "2"]
    command += ["--teacher", checkpoints / "fairseq.pt", "--out", out]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr == (
        f"lskd-vision: error: checkpoint {checkpoints / 'fairseq.pt'} is a fairseq checkpoint (it pickles "
        "argparse.Namespace, the config fairseq-train stores), not one this command reads\n"
    )
    assert not out.exists()


def test_fairseq_generate_refuses_an_unsafe_path_in_lskd_words(tmp_path, checkpoints, dictionaries):
    results = tmp_path / "results"
    result = fairseq_cli(
        "fairseq-generate",
        dictionaries,
        "--path",
        checkpoints / "unsafe.pt",
        "-s",
        "src",
        "-t",
        "tgt",
        "--results-path",
        results,
        check=False,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"lskd error: checkpoint {checkpoints / 'unsafe.pt'} was refused as unsafe: it pickles posix.getcwd, "
        "which a weights-only load (weights_only=True) does not allow; lskd loads only tensors and plain values"
    )
    assert TORCH_UNSAFE_ADVICE not in result.stderr and "Traceback" not in result.stderr
