"""Pairs longer than the teacher's positions: lskd-distill-corpus and lskd-dump-teacher used to end in
fairseq's traceback (advising a flag neither takes) and the dump left ``.partial`` files. Now both skip them
as fairseq-generate --skip-invalid-size-inputs-valid-test does: the distilled corpus keeps their reference
target, the cache lists them and training from it skips them; both record the count."""

import json

import numpy as np
import pytest

from fixtures.fairseq_runs import dump_teacher, fairseq_cli, train
from lskd_fairseq.binarised import load_subset, translation_task
from lskd_fairseq.cli import dump_teacher as dump_module
from lskd_tools.cli import parse_config

pytestmark = pytest.mark.slow  # trains a teacher and runs fairseq's CLIs

POSITIONS = 10  # the toy corpus has pairs of up to 11 tokens


@pytest.fixture(scope="module")
def short_teacher(tmp_path_factory, toy_bin):
    save_dir = tmp_path_factory.mktemp("short-teacher")
    limits = ["--max-source-positions", POSITIONS, "--max-target-positions", POSITIONS]
    skip = "--skip-invalid-size-inputs-valid-test"
    train(toy_bin, save_dir, "--criterion", "label_smoothed_teacher", "--max-update", "2", *limits, skip)
    return save_dir / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def too_long(toy_bin):
    """Ids of the train pairs with a source or target (EOS included) longer than the teacher's positions."""
    dataset = load_subset(translation_task(str(toy_bin), "src", "tgt"), "train")
    longest = np.maximum(dataset.src_sizes, dataset.tgt_sizes)
    ids = np.flatnonzero(longest > POSITIONS).tolist()
    assert 0 < len(ids) < len(dataset) // 2
    return ids


def test_distilled_corpus_keeps_the_reference_of_pairs_too_long_for_the_teacher(
    tmp_path, toy_bin, short_teacher, too_long
):
    out = tmp_path / "distilled"
    result = fairseq_cli("lskd-distill-corpus", toy_bin, "--teacher-path", short_teacher, "--out", out, "--cpu")
    assert f"{len(too_long)} too long for the teacher kept their reference" in result.stdout
    manifest = json.loads((out / "lskd-distill.json").read_text())
    assert manifest["counts"]["too_long"] == len(too_long)
    assert manifest["teacher_max_positions"] == [POSITIONS, POSITIONS]
    reference = load_subset(translation_task(str(toy_bin), "src", "tgt"), "train")
    distilled = load_subset(translation_task(str(out), "src", "tgt"), "train")
    assert len(distilled) == len(reference)
    for sentence_id in too_long:
        assert distilled.tgt[sentence_id].tolist() == reference.tgt[sentence_id].tolist()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["distilled"]  # no staging folder left


def test_dump_skips_pairs_too_long_for_the_teacher_and_training_skips_them(tmp_path, toy_bin, short_teacher, too_long):
    cache = tmp_path / "cache"
    for subset in ("train", "valid"):
        result = dump_teacher(toy_bin, short_teacher, cache, "--subset", subset)
    fingerprint = json.loads((cache / "train.json").read_text())
    assert fingerprint["too_long_sentences"] == too_long
    assert not [path.name for path in cache.iterdir() if "partial" in path.name]
    assert (
        f"{len(too_long)} sentences longer than the teacher's positions"
        in dump_teacher(toy_bin, short_teacher, cache, "--force").stdout
    )
    student = train(
        toy_bin,
        tmp_path / "student",
        "--task",
        "translation_kd",
        "--teacher-cache",
        cache,
        "--criterion",
        "word_kd",
        "--max-update",
        "1",
        "--skip-invalid-size-inputs-valid-test",
    )
    assert f"{len(too_long)} samples have invalid sizes and will be skipped" in student.stdout + student.stderr
    assert result.returncode == 0


def test_a_failed_dump_leaves_no_partial_files(tmp_path, toy_bin, short_teacher, monkeypatch):
    cache = tmp_path / "cache"

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dump_module, "score_batches", fail)
    argv = [str(toy_bin), "--teacher-path", str(short_teacher), "--out", str(cache)]
    args = parse_config(dump_module.DumpConfig, argv, prog=dump_module.PROG, description="")
    with pytest.raises(KeyboardInterrupt):
        dump_module.dump(args)
    assert list(cache.iterdir()) == []
