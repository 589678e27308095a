"""Students exported with lskd-export-ct2 and scored by lskd-evaluate with both engines.

A small label-smoothed student trained until its translations end on their own (an undertrained model's
hypotheses run to fairseq-generate's length limit, where fairseq forces an end-of-sentence token and
CTranslate2 stops without one): CTranslate2 float32 gives fairseq-generate's hypotheses and BLEU, int8 runs,
and every bleu.json equals sacreBLEU's command line on its own files. A word-KD and a seq-KD student, trained
for a few updates, export and translate."""

import json

import ctranslate2
import pytest

from fixtures.fairseq_runs import fairseq_cli, train
from lskd_nmt.evaluate import parse_generate_output
from sacrebleu_cli import cli_bleu

pytestmark = pytest.mark.slow  # fairseq-train runs: deselect with -m "not slow"

WORD_KD = ["--task", "translation_kd", "--criterion", "word_kd", "--kd-temperature", "2", "--label-smoothing", "0.1"]


BRIEFLY = ["--max-update", "5", "--disable-validation"]


@pytest.fixture(scope="module")
def student(tmp_path_factory, toy_bin):
    save_dir = tmp_path_factory.mktemp("student")
    train(
        toy_bin,
        save_dir,
        *("--criterion", "label_smoothed_teacher", "--label-smoothing", "0.1", "--disable-validation"),
        *("--max-update", "80", "--lr", "0.01", "--max-tokens", "4000"),
    )
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def word_student(tmp_path_factory, toy_bin, teacher_checkpoint):
    save_dir = tmp_path_factory.mktemp("word-student")
    train(toy_bin, save_dir, *WORD_KD, "--teacher-path", teacher_checkpoint, *BRIEFLY)
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def seq_student(tmp_path_factory, toy_bin, teacher_checkpoint):
    distilled = tmp_path_factory.mktemp("distilled") / "bin"
    fairseq_cli("lskd-distill-corpus", toy_bin, "--teacher-path", teacher_checkpoint, "--out", distilled, "--beam", "2")
    save_dir = tmp_path_factory.mktemp("seq-student")
    train(distilled, save_dir, "--criterion", "label_smoothed_teacher", *BRIEFLY)
    return save_dir / "checkpoint_last.pt", distilled


def export(checkpoint, data, out, *extra):
    fairseq_cli("lskd-export-ct2", checkpoint, "--data-bin", data, "--out", out, *extra)
    return out


def evaluate(data, references, out, *extra):
    options = ("--source-lang", "src", "--target-lang", "tgt", "--profile", "modern", "--subword", "none")
    result = fairseq_cli("lskd-evaluate", data, *options, "--references", references, "--out", out, *extra)
    return json.loads(out.read_text()), result


@pytest.fixture(scope="module")
def scored(student, toy_bin, toy_text, tmp_path_factory):
    root = tmp_path_factory.mktemp("deployed")
    float32 = export(student, toy_bin, root / "float32")
    int8 = export(student, toy_bin, root / "int8", "--quantization", "int8")
    references = toy_text / "test.tgt"
    common = ("--beam", "4", "--batch-size", "16", "--device", "cpu")
    runs = {
        "fairseq": evaluate(toy_bin, references, root / "fairseq/bleu.json", "--path", student, *common),
        "float32": evaluate(
            toy_bin, references, root / "ct2-float32/bleu.json", "--engine", "ctranslate2", "--model", float32, *common
        ),
        "int8": evaluate(
            toy_bin, references, root / "ct2-int8/bleu.json", "--engine", "ctranslate2", "--model", int8, *common
        ),
    }
    return root, references, runs


def hypotheses(run) -> list[str]:
    scores, _ = run
    with open(scores["hypotheses"], encoding="utf-8") as log:
        return parse_generate_output(log.read())[0]


def test_float32_gives_fairseq_generate_hypotheses_token_for_token(scored):
    _, _, runs = scored
    fairseq, ctranslate = hypotheses(runs["fairseq"]), hypotheses(runs["float32"])
    assert len(fairseq) == len(ctranslate) == runs["fairseq"][0]["n_sentences"] == 80
    same = sum(ours.split() == theirs.split() for ours, theirs in zip(ctranslate, fairseq))
    assert same >= 0.99 * len(fairseq), [(o, t) for o, t in zip(ctranslate, fairseq) if o != t][:3]


def test_both_engines_write_the_same_scores_and_signatures(scored):
    _, _, runs = scored
    fairseq, ctranslate = runs["fairseq"][0], runs["float32"][0]
    for flavour in ("sacrebleu", "tokenized_bleu"):
        assert ctranslate[flavour]["score"] == pytest.approx(fairseq[flavour]["score"], abs=0.01)
        assert ctranslate[flavour]["signature"] == fairseq[flavour]["signature"]
    assert ctranslate["n_sentences"] == fairseq["n_sentences"]
    assert (fairseq["engine"], fairseq["compute_type"]) == ("fairseq", "float32")
    assert (ctranslate["engine"], ctranslate["compute_type"]) == ("ctranslate2", "float32")


@pytest.mark.parametrize("run", ["fairseq", "float32", "int8"])
def test_each_bleu_json_is_the_sacrebleu_cli_on_its_files(scored, run, tmp_path):
    root, references, runs = scored
    scores, result = runs[run]
    folder = root / {"fairseq": "fairseq", "float32": "ct2-float32", "int8": "ct2-int8"}[run]
    detok = (folder / "test.hyp.detok").read_text(encoding="utf-8").splitlines()
    assert detok == hypotheses(runs[run])
    expected = cli_bleu(tmp_path, detok, references.read_text(encoding="utf-8").splitlines())
    assert scores["sacrebleu"]["score"] == pytest.approx(expected, abs=1e-4)
    progress = "fairseq-generate test: 100%" if run == "fairseq" else "ctranslate2 test: 100%"
    assert progress in result.stderr and "80/80" in result.stderr
    assert f"sacrebleu      {scores['sacrebleu']['score']:6.2f}" in result.stdout


def test_int8_runs_and_reports_its_bleu(scored):
    _, _, runs = scored
    scores, result = runs["int8"]
    assert (scores["engine"], scores["compute_type"]) == ("ctranslate2", "int8")
    assert scores["n_sentences"] == 80  # its score: test_each_bleu_json_is_the_sacrebleu_cli_on_its_files
    assert scores["decode_seconds"] > 0 and "translated by ctranslate2 (int8)" in result.stdout


def test_a_ctranslate2_log_rescores_with_hypotheses(scored, toy_bin):
    root, references, runs = scored
    log = runs["float32"][0]["hypotheses"]
    rescored, _ = evaluate(toy_bin, references, root / "rescored/bleu.json", "--hypotheses", log)
    assert rescored["sacrebleu"] == runs["float32"][0]["sacrebleu"]
    assert rescored["engine"] is None and rescored["hypotheses"] == log


def translates(folder) -> bool:
    (result,) = ctranslate2.Translator(str(folder), device="cpu").translate_batch([["the", "dog"]], beam_size=2)
    return bool(result.hypotheses[0])


def test_seq_kd_student_exports_and_translates(seq_student, tmp_path):
    checkpoint, distilled = seq_student
    out = export(checkpoint, distilled, tmp_path / "seq")
    manifest = json.loads((out / "lskd-export.json").read_text())
    assert manifest["trained_with"] == {"task": "translation", "criterion": "label_smoothed_teacher"}
    assert manifest["data_bin"] == str(distilled.resolve()) and translates(out)


def test_word_kd_student_exports_and_translates(word_student, toy_bin, tmp_path):
    out = export(word_student, toy_bin, tmp_path / "word", "--quantization", "int8")
    manifest = json.loads((out / "lskd-export.json").read_text())
    assert manifest["trained_with"] == {"task": "translation_kd", "criterion": "word_kd"}
    assert manifest["quantization"] == "int8" and translates(out)
