"""lskd-fairseq-diffusion on the tiny transformer teacher the suite trains on the toy corpus."""

import itertools
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lskd_fairseq.binarised import load_subset, translation_task
from lskd_fairseq.checkpoints import load_frozen_model
from lskd_fairseq.cli.diffusion import batch_features
from lskd_fairseq.cli.diffusion import main as diffusion_main

pytestmark = pytest.mark.slow  # trains a model with fairseq-train: deselect with -m "not slow"

BIN = Path(sys.executable).parent
TOKENS = ("der", "die", "hund")
ERROR_PREFIX = "lskd-fairseq-diffusion: error: "


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_text, toy_bin, teacher_checkpoint):
    """The session's toy corpus, its binarised form and label-smoothed teacher, under one folder."""
    root = tmp_path_factory.mktemp("toy_nmt")
    for name, target in (("text", toy_text), ("bin", toy_bin), ("ckpt", teacher_checkpoint.parent)):
        (root / name).symlink_to(target)
    return root


def run_cli(toy, out, *extra):
    return diffusion_main(
        [
            str(toy / "bin"),
            "--source-lang",
            "src",
            "--target-lang",
            "tgt",
            "--out",
            str(out),
            "--checkpoints",
            f"teacher={toy / 'ckpt/checkpoint_best.pt'}",
            f"last={toy / 'ckpt/checkpoint_last.pt'}",
            *extra,
        ]
    )


def first_lines_token_counts(path, lines=None):
    """Token counts over the first ``lines`` lines of a text file (all of them by default)."""
    with open(path) as text:
        return Counter(token for line in itertools.islice(text, lines) for token in line.split())


def test_named_tokens_give_png_and_json(toy, tmp_path):
    run_cli(toy, tmp_path / "out", "--tokens", *TOKENS, "--max-sentences", "200")
    content = json.loads((tmp_path / "out/diffusion.json").read_text())
    assert (tmp_path / "out/diffusion.png").read_bytes()[:4] == b"\x89PNG"
    assert [content["classes"][role]["name"] for role in ("target", "similar", "control")] == list(TOKENS)
    assert list(content["models"]) == ["teacher", "last"]
    index = {content["classes"][role]["name"]: str(content["classes"][role]["index"]) for role in content["classes"]}
    for split, text, lines in (("train", "train.tgt", 200), ("valid", "valid.tgt", None)):
        expected = first_lines_token_counts(toy / "text" / text, lines)
        samples = content["models"]["teacher"][split]["samples"]
        assert samples == {index[token]: expected[token] for token in TOKENS}
    assert content["models"]["teacher"]["train"]["penultimate"]["dimension"] == 32


def test_max_per_class_caps_positions(toy, tmp_path):
    run_cli(toy, tmp_path, "--tokens", *TOKENS, "--max-per-class", "5")
    for split in ("train", "valid"):
        assert set(
            json.loads((tmp_path / "diffusion.json").read_text())["models"]["last"][split]["samples"].values()
        ) == {5}


def test_penultimate_features_reproduce_the_logits(toy):
    task = translation_task(str(toy / "bin"), "src", "tgt")
    model = load_frozen_model(str(toy / "ckpt/checkpoint_best.pt"), task)
    dataset = load_subset(task, "valid")
    batch = dataset.collater([dataset[i] for i in range(8)])
    features, target = batch_features(model, batch, torch.device("cpu"))
    with torch.no_grad():
        logits, _ = model(**batch["net_input"])
    weight = model.decoder.embed_tokens.weight  # shared embeddings: the output projection has no bias
    assert model.decoder.output_projection.bias is None
    torch.testing.assert_close(features @ weight.T, logits, rtol=1e-4, atol=1e-4)
    assert target.shape == logits.shape[:2]


def test_suggest_picks_three_frequent_tokens(toy, tmp_path, capsys):
    run_cli(toy, tmp_path, "--suggest", "--min-count", "30")
    content = json.loads((tmp_path / "diffusion.json").read_text())
    names = [content["classes"][role]["name"] for role in ("target", "similar", "control")]
    counts = first_lines_token_counts(toy / "text/train.tgt")
    assert len(set(names)) == 3 and all(counts[name] >= 30 for name in names)
    assert f"suggested tokens {names}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--tokens", "der", "die", "zzunknown"), "token 'zzunknown' is not in the target dictionary"),
        (("--tokens", "der", "die", "hund", "--checkpoints", "nameless"), "entry 'nameless' is not NAME=CKPT"),
        (
            ("--tokens", "der", "die", "hund", "--checkpoints", "x=/nonexistent.pt"),
            "checkpoint /nonexistent.pt does not exist",
        ),
        (("--tokens", "der", "die", "hund", "--subset-valid", "dev"), "subset 'dev' not found"),
        (("--suggest", "--min-count", "100000"), "have at least 100000 samples; 3 are needed"),
    ],
)
def test_errors_are_one_line_and_nothing_is_written(toy, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(toy, tmp_path / "never", *extra)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "never").exists()


def test_suggestion_uses_the_first_checkpoint(toy, tmp_path):
    """The suggested pair is the highest-cosine pair of output embeddings, checked here with numpy."""
    task = translation_task(str(toy / "bin"), "src", "tgt")
    model = load_frozen_model(str(toy / "ckpt/checkpoint_best.pt"), task)
    dictionary = task.target_dictionary
    counts = first_lines_token_counts(toy / "text/train.tgt")
    valid_counts = first_lines_token_counts(toy / "text/valid.tgt")
    eligible = [dictionary.index(t) for t, n in counts.items() if n >= 30 and valid_counts[t] >= 2]
    weight = model.decoder.output_projection.weight.detach().double().numpy()[eligible]
    unit = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    best = np.unravel_index(np.argmax(cosine), cosine.shape)
    expected_pair = {dictionary[eligible[i]] for i in best}
    diffusion_main(
        [
            task.cfg.data,
            "--source-lang",
            "src",
            "--target-lang",
            "tgt",
            "--out",
            str(tmp_path),
            "--checkpoints",
            f"first={toy / 'ckpt/checkpoint_best.pt'}",
            "--suggest",
            "--min-count",
            "30",
        ]
    )
    classes = json.loads((tmp_path / "diffusion.json").read_text())["classes"]
    assert {classes["target"]["name"], classes["similar"]["name"]} == expected_pair


def test_checkpoint_with_another_vocabulary_is_refused(toy, tmp_path, capsys):
    state = torch.load(toy / "ckpt/checkpoint_best.pt", weights_only=True)
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        state["model"][key] = state["model"][key][:-8]
    torch.save(state, tmp_path / "smaller.pt")
    argv = [
        str(toy / "bin"),
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        "--out",
        str(tmp_path / "never"),
        "--checkpoints",
        f"small={tmp_path / 'smaller.pt'}",
        "--tokens",
        *TOKENS,
    ]
    with pytest.raises(SystemExit) as exit_info:
        diffusion_main(argv)
    assert exit_info.value.code == 2
    vocabulary = len(translation_task(str(toy / "bin"), "src", "tgt").target_dictionary)
    assert (
        f"its encoder vocabulary has {vocabulary - 8} symbols, the data's dictionary has {vocabulary}"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "never").exists()
