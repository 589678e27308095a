"""lskd-export-ct2 on the session's teacher: the folder and its manifest, and every refused input (one line,
exit status 2, nothing written to --out), with lskd-evaluate's refusals of a folder that is not a model."""

import hashlib
import json
import shutil
import subprocess

import ctranslate2
import pytest
import torch

import lskd_fairseq  # noqa: F401  (allow-lists what fairseq checkpoints need)
from fixtures.fairseq_runs import fairseq_cli
from lskd_deploy.translate import Hypothesis, Subset, generate_log
from lskd_fairseq.checkpoints import DICTIONARIES_KEY
from lskd_nmt.evaluate import is_generate_output, parse_generate_output


def export(checkpoint, data, out, *extra) -> subprocess.CompletedProcess:
    return fairseq_cli("lskd-export-ct2", checkpoint, "--data-bin", data, "--out", out, *extra, check=False)


def refused(result: subprocess.CompletedProcess, out, prog: str, *fragments) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    assert not list(out.parent.glob(f".{out.name}*")), "a staging folder was left behind"
    return lines[0]


def dictionary_symbols(path):
    """fairseq's Dictionary.load order, written independently: 4 specials, then the file's first column."""
    return ["<s>", "<pad>", "</s>", "<unk>"] + [line.split()[0] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def exported(teacher_checkpoint, toy_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "teacher-ct2"
    result = export(teacher_checkpoint, toy_bin, out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def test_folder_is_a_ctranslate2_model_with_the_data_vocabulary(exported, toy_bin):
    out, result = exported
    assert ctranslate2.contains_model(str(out))
    vocabulary = json.loads((out / "shared_vocabulary.json").read_text())
    expected = ["<blank>" if s == "<pad>" else s for s in dictionary_symbols(toy_bin / "dict.tgt.txt")]
    assert vocabulary == expected
    assert str(out) in result.stdout and "float32" in result.stdout


def test_manifest_names_the_checkpoint_and_what_was_converted(exported, teacher_checkpoint, toy_bin):
    out, _ = exported
    manifest = json.loads((out / "lskd-export.json").read_text())
    assert manifest["source_checkpoint_sha256"] == hashlib.sha256(teacher_checkpoint.read_bytes()).hexdigest()
    assert manifest["quantization"] == "float32"
    assert manifest["ctranslate2_version"] == ctranslate2.__version__
    size = len(dictionary_symbols(toy_bin / "dict.src.txt"))
    assert manifest["vocabulary_sizes"] == {"source": size, "target": size, "shared": True}
    assert manifest["trained_with"]["criterion"] == "label_smoothed_teacher"
    assert manifest["dictionaries_checked"] == "symbols recorded in the checkpoint"


def test_force_replaces_an_existing_model(exported, teacher_checkpoint, toy_bin, tmp_path):
    out = shutil.copytree(exported[0], tmp_path / "model")
    result = export(teacher_checkpoint, toy_bin, out, "--quantization", "int8", "--force")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "lskd-export.json").read_text())["quantization"] == "int8"
    assert (out / "model.bin").stat().st_size < (exported[0] / "model.bin").stat().st_size


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, teacher_checkpoint, toy_bin):
    folder = tmp_path_factory.mktemp("bad-exports")
    torch.save({"arch": "resnet18", "state_dict": {"fc.weight": torch.zeros(2, 2)}}, folder / "vision.pt")
    state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=True)
    state["cfg"]["model"].arch = "lstm"
    torch.save(state, folder / "lstm.pt")
    permuted = folder / "permuted-bin"
    permuted.mkdir()
    for lang in ("src", "tgt"):
        lines = (toy_bin / f"dict.{lang}.txt").read_text().splitlines(keepends=True)
        lines[0], lines[1] = lines[1], lines[0]
        (permuted / f"dict.{lang}.txt").write_text("".join(lines))
    return folder


def test_vision_checkpoint_refused(bad_inputs, toy_bin, tmp_path):
    out = tmp_path / "out"
    refused(export(bad_inputs / "vision.pt", toy_bin, out), out, "lskd-export-ct2", "not a fairseq checkpoint")


def test_missing_checkpoint_refused(toy_bin, tmp_path):
    out = tmp_path / "out"
    result = export(tmp_path / "nothing.pt", toy_bin, out)
    refused(result, out, "lskd-export-ct2", "nothing.pt does not exist")


def test_architecture_ctranslate2_cannot_convert_is_named(bad_inputs, toy_bin, tmp_path):
    out = tmp_path / "out"
    line = refused(export(bad_inputs / "lstm.pt", toy_bin, out), out, "lskd-export-ct2", "architecture 'lstm'")
    assert "transformer" in line


def test_other_dictionaries_refused_naming_the_first_differing_symbol(
    bad_inputs, teacher_checkpoint, toy_bin, tmp_path
):
    out = tmp_path / "out"
    first, second = dictionary_symbols(toy_bin / "dict.src.txt")[4:6]
    result = export(
        teacher_checkpoint, bad_inputs / "permuted-bin", out, "--source-lang", "src", "--target-lang", "tgt"
    )
    line = refused(result, out, "lskd-export-ct2", "source dictionary", "(192 vs 192 symbols")
    assert f"index 4: --data-bin has {second!r}, checkpoint has {first!r}" in line


def test_unknown_quantization_lists_the_choices(teacher_checkpoint, toy_bin, tmp_path):
    out = tmp_path / "out"
    line = refused(export(teacher_checkpoint, toy_bin, out, "--quantization", "int4"), out, "lskd-export-ct2", "'int4'")
    assert all(choice in line for choice in ("int8", "int8_float16", "float16", "float32"))


def test_existing_folder_without_force_refused_and_kept(teacher_checkpoint, toy_bin, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = export(teacher_checkpoint, toy_bin, out)
    assert result.returncode == 2 and "--force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.fixture(scope="module")
def plain_transformer(tmp_path_factory, teacher_checkpoint):
    """The teacher as a checkpoint trained without lskd's criteria stores it: no dictionaries recorded."""
    state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=True)
    del state["task_state"][DICTIONARIES_KEY]
    state["cfg"]["criterion"] = {"_name": "label_smoothed_cross_entropy"}
    path = tmp_path_factory.mktemp("plain") / "checkpoint.pt"
    torch.save(state, path)
    return path


def test_plain_fairseq_transformer_is_checked_against_its_training_data(plain_transformer, toy_bin, tmp_path):
    out = export(plain_transformer, toy_bin, tmp_path / "plain")
    assert out.returncode == 0, out.stderr[-2000:]
    manifest = json.loads((tmp_path / "plain" / "lskd-export.json").read_text())
    assert manifest["dictionaries_checked"] == f"symbols of the training data folder {toy_bin}"
    assert manifest["trained_with"]["criterion"] == "label_smoothed_cross_entropy"


def test_force_never_replaces_the_folder_holding_the_checkpoint(teacher_checkpoint, toy_bin, tmp_path):
    save_dir = tmp_path / "save"
    save_dir.mkdir()
    checkpoint = shutil.copy(teacher_checkpoint, save_dir / "checkpoint_best.pt")
    result = export(checkpoint, toy_bin, save_dir, "--force")
    assert result.returncode == 2 and "holds the checkpoint" in result.stderr
    assert sorted(p.name for p in save_dir.iterdir()) == ["checkpoint_best.pt"]


def evaluate(data, out, *extra) -> subprocess.CompletedProcess:
    options = ("--source-lang", "src", "--target-lang", "tgt", "--profile", "modern", "--subword", "none")
    return fairseq_cli("lskd-evaluate", data, *options, "--out", out / "bleu.json", *extra, check=False)


def test_evaluate_refuses_a_folder_that_is_not_a_ctranslate2_model(toy_bin, teacher_checkpoint, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(toy_bin, out, "--engine", "ctranslate2", "--model", teacher_checkpoint.parent)
    refused(result, out, "lskd-evaluate", "is not a CTranslate2 model folder")
    result = evaluate(toy_bin, out, "--engine", "ctranslate2", "--path", teacher_checkpoint)
    refused(result, out, "lskd-evaluate", "--engine ctranslate2 decodes a --model folder")


def test_evaluate_refuses_a_model_of_other_dictionaries(exported, bad_inputs, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(bad_inputs / "permuted-bin", out, "--engine", "ctranslate2", "--model", exported[0])
    refused(result, out, "lskd-evaluate", "source vocabulary is not", "first difference at index 4")


def test_evaluate_refuses_ctranslate2_flags_with_fairseq(exported, teacher_checkpoint, toy_bin, tmp_path):
    out = tmp_path / "eval"
    result = evaluate(toy_bin, out, "--path", teacher_checkpoint, "--compute-type", "int8")
    refused(result, out, "lskd-evaluate", "--compute-type int8 is for --engine ctranslate2")
    result = evaluate(toy_bin, out, "--path", teacher_checkpoint, "--threads", "2")
    refused(result, out, "lskd-evaluate", "--threads 2 is for --engine ctranslate2")
    result = evaluate(toy_bin, out, "--engine", "ctranslate2", "--model", exported[0], "--compute-type", "int3")
    refused(result, out, "lskd-evaluate", "'int3'", "int8_float32")


def test_ctranslate2_log_reads_as_a_fairseq_generate_log():
    """lskd-evaluate's parser of fairseq-generate logs reads the CTranslate2 log back, corpus order kept."""
    subset = Subset(sources=[["a", "b"], ["c"]], targets=["x y", "<<unk>> z"], batches=[[1, 0]])
    hypotheses = [Hypothesis(["x", "y"], -0.5), Hypothesis([], -2.0)]
    text = generate_log(subset, hypotheses)
    assert is_generate_output(text)
    assert parse_generate_output(text) == (["x y", ""], ["x y", "<<unk>> z"])
    assert "H-0\t-0.7213\tx y" in text.splitlines()  # base-2 score, as fairseq-generate prints it
