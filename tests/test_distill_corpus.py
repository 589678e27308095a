"""lskd-distill-corpus: distilled targets against fairseq-generate's own output, the folder it writes, seq-KD
and seq+word students on it, the teacher cache fingerprint, fallback counts, interrupted runs, bad inputs."""

import filecmp
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from fairseq.data import Dictionary, indexed_dataset

from fixtures.fairseq_runs import dump_teacher, fairseq_cli, train
from lskd_fairseq.binarised import load_subset, translation_task
from lskd_fairseq.cli import distill_corpus
from lskd_fairseq.distilled_corpus import MANIFEST, staging_folder
from lskd_fairseq.teacher_cache import Fingerprint
from lskd_tools.cli import run_command
from sacrebleu_cli import cli_bleu

pytestmark = pytest.mark.slow  # trains a teacher and runs fairseq's CLIs: deselect with -m "not slow"

PROG = "lskd-distill-corpus"
BATCH = ["--max-tokens", "700"]
DECODING = ["--beam", "3", "--lenpen", "1.2", *BATCH]
STUDENT_UPDATES = ["--max-update", "8", "--validate-interval-updates", "8"]


def distill_cli(data, teacher, out, *extra, check=True) -> subprocess.CompletedProcess:
    return fairseq_cli(PROG, data, "--teacher-path", teacher, "--out", out, *extra, check=check)


def distill_here(data, teacher, out, *extra) -> dict:
    """The command's work in this process (no interpreter start-up); returns the manifest."""
    args = distill_corpus.parse_args([str(data), "--teacher-path", str(teacher), "--out", str(out), *map(str, extra)])
    return distill_corpus.distill(args)


def generated(data, teacher, *extra) -> dict[int, str]:
    """fairseq-generate's best hypothesis text (H- lines) per sentence id of the train subset."""
    output = fairseq_cli(
        "fairseq-generate",
        data,
        "--path",
        teacher,
        "--gen-subset",
        "train",
        "--required-batch-size-multiple",
        "1",
        *extra,
    ).stdout
    hypotheses = {}
    for line in output.splitlines():
        if line.startswith("H-"):
            number, _score, text = line[2:].split("\t", 2)
            hypotheses[int(number)] = text
    return hypotheses


def target_strings(data, subset="train") -> list[str]:
    """The subset's targets read back through fairseq's translation dataset, as token strings."""
    task = translation_task(str(data), "src", "tgt")
    dataset = load_subset(task, subset)
    return [task.target_dictionary.string(dataset[i]["target"]) for i in range(len(dataset))]


def subset_files(split):
    return [f"{split}.src-tgt.{lang}.{ext}" for lang in ("src", "tgt") for ext in ("bin", "idx")]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def seq_teacher(tmp_path_factory, toy_bin):
    """A teacher trained long enough that its beam output is mostly sensible but not the references."""
    save_dir = tmp_path_factory.mktemp("seq-teacher")
    train(
        toy_bin,
        save_dir,
        "--criterion",
        "label_smoothed_teacher",
        "--label-smoothing",
        "0.1",
        "--lr",
        "0.01",
        "--max-epoch",
        "30",
    )
    return save_dir / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, toy_bin, seq_teacher):
    out = tmp_path_factory.mktemp("distilled") / "bin"
    result = distill_cli(toy_bin, seq_teacher, out, *DECODING)
    return out, result


@pytest.fixture(scope="module")
def eos_teacher(tmp_path_factory, seq_teacher):
    """seq_teacher changed so that its decoder output always points at EOS: every step prefers ending."""
    state = torch.load(seq_teacher, map_location="cpu", weights_only=True)
    weights = state["model"]
    eos = Dictionary().eos()
    weights["decoder.layers.0.final_layer_norm.weight"].zero_()
    weights["decoder.layers.0.final_layer_norm.bias"].zero_()[0] = 1.0
    for key in ("decoder.output_projection.weight", "decoder.embed_tokens.weight", "encoder.embed_tokens.weight"):
        weights[key][eos].zero_()[0] = 50.0
    path = tmp_path_factory.mktemp("eos-teacher") / "checkpoint.pt"
    torch.save(state, path)
    return path


def test_distilled_targets_equal_fairseq_generate_hypotheses(distilled, toy_bin, seq_teacher):
    out, result = distilled
    hypotheses = generated(toy_bin, seq_teacher, *DECODING)
    targets = target_strings(out)
    assert sorted(hypotheses) == list(range(len(targets)))
    assert targets == [hypotheses[i] for i in range(len(targets))]
    assert targets != target_strings(toy_bin), "the teacher should not reproduce every reference"
    assert "800 train sentences" in result.stdout


def test_folder_holds_original_sources_dictionaries_and_other_subsets(distilled, toy_bin, seq_teacher):
    out, _ = distilled
    for name in [
        "dict.src.txt",
        "dict.tgt.txt",
        *subset_files("valid"),
        *subset_files("test"),
        "train.src-tgt.src.bin",
        "train.src-tgt.src.idx",
    ]:
        assert filecmp.cmp(out / name, toy_bin / name, shallow=False), name
    original = indexed_dataset.MMapIndexedDataset(str(toy_bin / "train.src-tgt.tgt"))
    written = indexed_dataset.MMapIndexedDataset(str(out / "train.src-tgt.tgt"))
    assert len(written) == len(original) == 800
    manifest = json.loads((out / MANIFEST).read_text())
    settings, counts = manifest["settings"], manifest["counts"]
    assert settings["teacher_checkpoint_sha256"] == sha256(seq_teacher)
    assert (settings["beam"], settings["lenpen"], settings["max_tokens"]) == (3, 1.2, 700)
    assert settings["input_files_sha256"]["train.src-tgt.tgt.bin"] == sha256(toy_bin / "train.src-tgt.tgt.bin")
    assert counts["sentences"] == 800
    assert counts["hypothesis_tokens"] == sum(int(written.sizes[i]) - 1 for i in range(len(written)))
    assert not staging_folder(out).exists()


def test_seq_kd_and_seq_word_students_train_and_are_scored(distilled, seq_teacher, tmp_path):
    out, _ = distilled
    seq = tmp_path / "seq"
    train(out, seq, "--criterion", "label_smoothed_teacher", "--label-smoothing", "0.1", *STUDENT_UPDATES)
    seq_word = tmp_path / "seq-word"
    result = train(
        out,
        seq_word,
        "--task",
        "translation_kd",
        "--teacher-path",
        seq_teacher,
        "--criterion",
        "word_kd",
        "--kd-temperature",
        "1",
        "--kd-weight",
        "0.5",
        "--label-smoothing",
        "0.1",
        *STUDENT_UPDATES,
    )
    assert '"kd_loss"' in result.stdout
    for save_dir in (seq, seq_word):
        bleu = save_dir / "bleu.json"
        evaluation = ["--source-lang", "src", "--target-lang", "tgt", "--beam", "2", "--profile", "modern"]
        evaluation += ["--subword", "none", "--out", bleu]
        fairseq_cli("lskd-evaluate", out, "--path", save_dir / "checkpoint_best.pt", *evaluation)
        scores = json.loads(bleu.read_text())
        assert scores["n_sentences"] == 80 and scores["data_bin"] == str(out)
        lines = {name: (save_dir / f"test.{name}.detok").read_text().splitlines() for name in ("hyp", "ref")}
        rescored = cli_bleu(tmp_path, lines["hyp"], lines["ref"])  # the sacreBLEU command on the same text
        assert scores["sacrebleu"]["score"] == pytest.approx(rescored, abs=1e-6)


def test_teacher_cache_of_the_distilled_folder_trains_and_one_of_the_original_is_refused(
    distilled, toy_bin, seq_teacher, tmp_path
):
    out, _ = distilled
    caches = {"distilled": (out, tmp_path / "cache-distilled"), "original": (toy_bin, tmp_path / "cache-original")}
    for data, cache in caches.values():
        for subset in ("train", "valid"):
            dump_teacher(data, seq_teacher, cache, "--subset", subset, "--topk", 4)
    word_kd = ["--task", "translation_kd", "--criterion", "word_kd", "--kd-temperature", "1", "--kd-weight", "0.5"]
    train(out, tmp_path / "student", *word_kd, "--teacher-cache", caches["distilled"][1], *STUDENT_UPDATES)
    refused = train(
        out, tmp_path / "refused", *word_kd, "--teacher-cache", caches["original"][1], *STUDENT_UPDATES, check=False
    )
    assert refused.returncode != 0
    assert "does not match the 'train' data" in refused.stderr and "target_tokens_sha256" in refused.stderr
    assert not (tmp_path / "refused" / "checkpoint_last.pt").exists()


def test_fingerprint_tells_targets_apart_when_only_their_tokens_differ(toy_bin, tmp_path):
    """Same lengths, other tokens (each target reversed before its EOS): only the token hash differs."""
    shuffled = tmp_path / "reversed"
    shutil.copytree(toy_bin, shuffled)
    original = indexed_dataset.MMapIndexedDataset(str(toy_bin / "train.src-tgt.tgt"))
    prefix = str(shuffled / "train.src-tgt.tgt")
    builder = indexed_dataset.make_builder(indexed_dataset.data_file_path(prefix), "mmap", vocab_size=len(original))
    for i in range(len(original)):
        tokens = original[i]
        builder.add_item(torch.cat([tokens[:-1].flip(0), tokens[-1:]]))
    builder.finalize(indexed_dataset.index_file_path(prefix))
    prints = []
    for data in (toy_bin, shuffled):
        task = translation_task(str(data), "src", "tgt")
        prints.append(Fingerprint.of_data("train", load_subset(task, "train"), task.target_dictionary))
    assert [d.split(" ")[0] for d in prints[0].differences(prints[1])] == ["target_tokens_sha256"]


def test_length_limit_hypotheses_keep_their_reference(toy_bin, seq_teacher, tmp_path):
    limit = ["--max-len-b", "6", *DECODING]
    hypotheses = generated(toy_bin, seq_teacher, *limit)
    at_limit = {i for i, text in hypotheses.items() if len(text.split()) == 6}
    assert 0 < len(at_limit) < len(hypotheses)
    references = target_strings(toy_bin)
    kept = distill_here(toy_bin, seq_teacher, tmp_path / "fallback", *limit)["counts"]
    plain = distill_here(toy_bin, seq_teacher, tmp_path / "plain", *limit, "--no-fallback-to-reference")["counts"]
    assert kept["length_limit_hypotheses"] == plain["length_limit_hypotheses"] == len(at_limit)
    assert (kept["fell_back"], plain["fell_back"], kept["empty_hypotheses"]) == (len(at_limit), 0, 0)
    assert target_strings(tmp_path / "fallback") == [
        references[i] if i in at_limit else hypotheses[i] for i in range(len(hypotheses))
    ]
    assert target_strings(tmp_path / "plain") == [hypotheses[i] for i in range(len(hypotheses))]


def test_empty_hypotheses_are_counted_and_keep_their_reference(toy_bin, eos_teacher, tmp_path):
    decoding = ["--min-len", "0", "--max-len-b", "5", *BATCH, "--beam", "2"]
    hypotheses = generated(toy_bin, eos_teacher, *decoding)
    empty = {i for i, text in hypotheses.items() if not text}
    assert empty, "the EOS teacher should end some hypotheses at once"
    counts = distill_here(toy_bin, eos_teacher, tmp_path / "fallback", *decoding)["counts"]
    assert (counts["empty_hypotheses"], counts["fell_back"]) == (
        len(empty),
        len(empty) + counts["length_limit_hypotheses"],
    )
    references = target_strings(toy_bin)
    assert [references[i] for i in sorted(empty)] == [target_strings(tmp_path / "fallback")[i] for i in sorted(empty)]
    plain = distill_here(toy_bin, eos_teacher, tmp_path / "plain", *decoding, "--no-fallback-to-reference")
    assert plain["counts"]["fell_back"] == 0
    written = indexed_dataset.MMapIndexedDataset(str(tmp_path / "plain" / "train.src-tgt.tgt"))
    assert all(written[i].tolist() == [Dictionary().eos()] for i in empty)


KILL_AFTER_100_TARGETS = """
import os, signal, sys
from lskd_fairseq import distilled_corpus
from lskd_fairseq.cli import distill_corpus
add, calls = distilled_corpus.TargetWriter.add, []
def add_then_die(self, sentence_id, tokens):
    calls.append(sentence_id)
    if len(calls) == 100:
        os.kill(os.getpid(), signal.SIGKILL)
    add(self, sentence_id, tokens)
distilled_corpus.TargetWriter.add = add_then_die
distill_corpus.main(sys.argv[1:])
"""


def test_killed_run_leaves_no_folder_and_a_rerun_completes(distilled, toy_bin, seq_teacher, tmp_path):
    out = tmp_path / "bin"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_AFTER_100_TARGETS,
            str(toy_bin),
            "--teacher-path",
            str(seq_teacher),
            "--out",
            str(out),
            *DECODING,
        ],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9
    assert not out.exists() and (staging_folder(out) / "train.src-tgt.tgt.spill.bin").is_file()
    distill_here(toy_bin, seq_teacher, out, *DECODING)
    assert not staging_folder(out).exists()
    for name in os.listdir(distilled[0]):
        if name != MANIFEST:
            assert filecmp.cmp(out / name, distilled[0] / name, shallow=False), name


def test_failed_run_cleans_up_and_a_rerun_completes(toy_bin, seq_teacher, tmp_path, monkeypatch):
    out = tmp_path / "bin"
    real = distill_corpus.translate_batches

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(distill_corpus, "translate_batches", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        distill_here(toy_bin, seq_teacher, out, "--max-len-b", "3", *DECODING)
    assert not out.exists() and not staging_folder(out).exists()
    monkeypatch.setattr(distill_corpus, "translate_batches", real)
    assert distill_here(toy_bin, seq_teacher, out, "--max-len-b", "3", *DECODING)["counts"]["sentences"] == 800


def test_same_run_again_is_a_no_op_and_another_run_is_refused(distilled, toy_bin, seq_teacher):
    out, _ = distilled
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    again = distill_cli(toy_bin, seq_teacher, out, *DECODING)
    assert "already holds this distillation" in again.stdout
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before
    other = distill_cli(toy_bin, seq_teacher, out, *DECODING, "--beam", "2", check=False)
    errors = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(errors) == 1, other.stderr[-2000:]
    assert errors[0].startswith(f"{PROG}: error: --out {out} holds another distillation: beam (folder: 3, this run: 2)")
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == before


@pytest.fixture(scope="module")
def other_dictionary_data(tmp_path_factory, toy_bin):
    """toy_bin with two target symbols swapped: a teacher trained on toy_bin does not fit it."""
    folder = tmp_path_factory.mktemp("swapped") / "bin"
    shutil.copytree(toy_bin, folder)
    for lang in ("src", "tgt"):
        lines = (folder / f"dict.{lang}.txt").read_text().splitlines()
        lines[0], lines[1] = lines[1], lines[0]
        (folder / f"dict.{lang}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--beam", "0"], "--beam must be >= 1, got 0"),
        (["--lenpen", "nan"], "--lenpen must be a finite number, got nan"),
        (["--lenpen", "inf"], "--lenpen must be a finite number, got inf"),
        (["--max-len-b", "0"], "--max-len-b must be >= 1"),
        (["--fp16", "--cpu"], "--fp16 needs a GPU"),
        (["--subset", "nosuch"], "nosuch"),
        (["--teacher-path", "{missing}"], "does not exist"),
        (["{other_data}"], "dictionary"),
        (["--out", "{unrelated}"], "holds files that no lskd-distill-corpus run wrote (notes.txt)"),
        (["--out", "{data}"], "is the input data folder"),
    ],
)
def test_bad_input_is_one_line_error_before_writing(
    arguments, message, toy_bin, seq_teacher, other_dictionary_data, tmp_path, capsys
):
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine\n")
    paths = {
        "missing": tmp_path / "nope.pt",
        "other_data": other_dictionary_data,
        "unrelated": unrelated,
        "data": toy_bin,
    }
    data = str(other_dictionary_data) if arguments == ["{other_data}"] else str(toy_bin)
    arguments = [] if arguments == ["{other_data}"] else [a.format(**paths) for a in arguments]
    out = tmp_path / "out"
    argv = [data, "--teacher-path", str(seq_teacher), "--out", str(out), *DECODING, *arguments]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert run_command(PROG, distill_corpus.main.main, argv) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"{PROG}: error: "), errors
    assert message in errors[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (unrelated / "notes.txt").read_text() == "mine\n"
