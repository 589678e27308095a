"""lskd-evaluate on a real checkpoint: a tiny transformer trained for a few updates on the prepared
modern-profile De->En data (sentencepiece pieces), evaluated with the defaults read from lskd-prep.json."""

import json
import subprocess

import pytest

from environment import PYTHON
from lskd_nmt.nmt_profiles import moses_tokenize
from repo_root import REPO
from sacrebleu_cli import cli_bleu

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"

TINY_TRANSFORMER = [
    "--arch",
    "transformer",
    "--encoder-layers",
    "1",
    "--decoder-layers",
    "1",
    "--encoder-embed-dim",
    "64",
    "--decoder-embed-dim",
    "64",
    "--encoder-ffn-embed-dim",
    "128",
    "--decoder-ffn-embed-dim",
    "128",
    "--encoder-attention-heads",
    "2",
    "--decoder-attention-heads",
    "2",
    "--share-all-embeddings",
]


def run(*command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def evaluated(prepared, tmp_path_factory):
    data = prepared["modern_de_en"]
    root = tmp_path_factory.mktemp("e2e")
    run(
        PYTHON.parent / "fairseq-train",
        data / "bin",
        "--source-lang",
        "de",
        "--target-lang",
        "en",
        "--user-dir",
        REPO / "lskd_fairseq",
        *TINY_TRANSFORMER,
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--lr-scheduler",
        "inverse_sqrt",
        "--warmup-updates",
        "10",
        "--criterion",
        "label_smoothed_teacher",
        "--label-smoothing",
        "0.1",
        "--max-tokens",
        "2000",
        "--max-update",
        "20",
        "--disable-validation",
        "--save-dir",
        root / "ckpt",
        "--no-epoch-checkpoints",
        "--data-buffer-size",
        "0",
        "--num-workers",
        "0",
    )
    evaluation = run(
        PYTHON.parent / "lskd-evaluate",
        data / "bin",
        "--path",
        root / "ckpt/checkpoint_last.pt",
        "--source-lang",
        "de",
        "--target-lang",
        "en",
        "--subset",
        "valid",
        "--beam",
        "2",
        "--out",
        root / "run/bleu.json",
    )
    return data, root / "run", evaluation


def test_defaults_come_from_the_prep_manifest(evaluated):
    data, run_dir, _ = evaluated
    scores = json.loads((run_dir / "bleu.json").read_text())
    assert (scores["profile"], scores["subword"]) == ("modern", "sentencepiece")
    assert scores["references"] == str(data / "valid.en")
    assert scores["n_sentences"] == len((data / "valid.en").read_text().splitlines())


def test_bleu_json_scores_equal_sacrebleu_cli(evaluated, tmp_path):
    data, run_dir, _ = evaluated
    scores = json.loads((run_dir / "bleu.json").read_text())
    hypotheses = (run_dir / "valid.hyp.detok").read_text().splitlines()
    references = (data / "valid.en").read_text().splitlines()
    assert not any("\u2581" in line for line in hypotheses), "sentencepiece marks left in the hypotheses"
    assert scores["sacrebleu"]["score"] == pytest.approx(cli_bleu(tmp_path, hypotheses, references), abs=1e-4)
    expected = cli_bleu(
        tmp_path, moses_tokenize(hypotheses, "en"), moses_tokenize(references, "en"), "-tok", "none", "-lc"
    )
    assert scores["tokenized_bleu"]["score"] == pytest.approx(expected, abs=1e-4)


def test_hypotheses_follow_corpus_order(evaluated):
    """Each hypothesis line i is the H- line of sentence id i in the kept fairseq-generate log."""
    _, run_dir, _ = evaluated
    by_id = {}
    for line in (run_dir / "generate-valid.txt").read_text().splitlines():
        if line.startswith("H-"):
            number, _, pieces = line[2:].split("\t")
            by_id[int(number)] = "".join(pieces.split()).replace("\u2581", " ").strip()
    assert (run_dir / "valid.hyp.detok").read_text().splitlines() == [by_id[i] for i in range(len(by_id))]


def test_decoding_shows_progress_and_says_which_number_is_which(evaluated):
    data, run_dir, evaluation = evaluated
    total = len((data / "valid.en").read_text().splitlines())
    assert "fairseq-generate valid: 100%" in evaluation.stderr and f"{total}/{total}" in evaluation.stderr
    scores = json.loads((run_dir / "bleu.json").read_text())
    assert "BLEU4" in (run_dir / "generate-valid.txt").read_text() and "BLEU4" in scores["generate_bleu4"]
    assert scores["raw_references"] is None and "case:mixed" in scores["sacrebleu"]["signature"]
    assert f"sacrebleu      {scores['sacrebleu']['score']:6.2f}" in evaluation.stdout
    assert f"tokenized_bleu {scores['tokenized_bleu']['score']:6.2f}" in evaluation.stdout
