"""Offline top-k teacher cache: parity with the live teacher, fingerprint refusals, atomic dumps."""

import json

import numpy as np
import pytest
import torch

from fixtures.fairseq_runs import STUDENT, build_training, dump_teacher, fairseq_cli, first_batch, train
from lskd.errors import DataError
from lskd_fairseq.teacher_cache import CacheWriter, Fingerprint, TeacherCache
from lskd_nmt.toy_corpus import write_corpus

pytestmark = pytest.mark.slow  # trains a teacher and dumps caches through the CLIs: deselect with -m "not slow"


@pytest.fixture(scope="module")
def vocab_size(toy_bin):
    return sum(1 for _ in open(toy_bin / "dict.tgt.txt")) + 4


@pytest.fixture(scope="module")
def caches(tmp_path_factory, toy_bin, teacher_checkpoint, vocab_size):
    """A top-4 and a full-vocabulary fp32 cache of train and valid."""
    made = {}
    for name, k in (("top4", 4), ("full", vocab_size)):
        out = tmp_path_factory.mktemp(f"cache-{name}")
        for subset in ("train", "valid"):
            dump_teacher(toy_bin, teacher_checkpoint, out, "--subset", subset, "--topk", k, "--dtype", "fp32")
        made[name] = out
    return made


def kd_losses(toy_bin, teacher_checkpoint, cached_args, online_args):
    cached_task, model, cached_criterion = build_training(toy_bin, *STUDENT, *cached_args)
    online_task, _, online_criterion = build_training(
        toy_bin, *STUDENT, "--teacher-path", teacher_checkpoint, *online_args
    )
    cached_batch, online_batch = first_batch(cached_task), first_batch(online_task)
    assert torch.equal(cached_batch["id"], online_batch["id"])
    online_task.attach_teacher_outputs(online_batch, model)
    with torch.no_grad():
        cached = cached_criterion(model, cached_batch)
        online = online_criterion(model, online_batch)
    return cached, online


def test_cached_topk_equals_online_topk(toy_bin, teacher_checkpoint, caches):
    cached, online = kd_losses(toy_bin, teacher_checkpoint, ["--teacher-cache", caches["top4"]], ["--kd-topk", "4"])
    torch.testing.assert_close(cached[0], online[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached[2]["kd_loss"], online[2]["kd_loss"], rtol=1e-5, atol=1e-5)


def test_cache_with_k_equal_vocabulary_equals_full_online(toy_bin, teacher_checkpoint, caches):
    cached, online = kd_losses(toy_bin, teacher_checkpoint, ["--teacher-cache", caches["full"]], [])
    torch.testing.assert_close(cached[0], online[0], rtol=1e-5, atol=1e-5)


def test_dumped_logits_equal_generate_scoring_path(toy_bin, teacher_checkpoint, caches):
    scored = fairseq_cli(
        "fairseq-generate",
        toy_bin,
        "--path",
        teacher_checkpoint,
        "--score-reference",
        "--gen-subset",
        "valid",
        "--batch-size",
        "16",
    )
    cache_dir = caches["full"]
    indices = np.load(cache_dir / "valid.indices.npy")
    logits = np.load(cache_dir / "valid.logits.npy").astype(np.float64)
    offsets = np.load(cache_dir / "valid.offsets.npy")
    targets = build_training(toy_bin, "--criterion", "label_smoothed_teacher")[0]
    targets.load_dataset("valid")
    dataset = targets.dataset("valid")
    checked = 0
    for line in scored.stdout.splitlines():
        if not line.startswith("P-"):
            continue
        key, values = line.split("\t")
        sentence = int(key[2:])
        gold = dataset[sentence]["target"].numpy()
        rows = slice(offsets[sentence], offsets[sentence + 1])
        row_logits, row_indices = logits[rows], indices[rows]
        log_z = np.log(np.exp(row_logits - row_logits.max(1, keepdims=True)).sum(1)) + row_logits.max(1)
        gold_logits = np.array([row_logits[t][row_indices[t] == g][0] for t, g in enumerate(gold)])
        ours = (gold_logits - log_z) / np.log(2)
        np.testing.assert_allclose(ours, [float(v) for v in values.split()], atol=1e-4)
        checked += 1
    assert checked == len(dataset)


def test_cache_rows_follow_the_training_text(caches, toy_text, vocab_size):
    """Sentence count and per-sentence rows against the text fairseq-preprocess read: words + EOS per line."""
    lengths = [len(line.split()) + 1 for line in (toy_text / "train.tgt").read_text().splitlines()]
    stored = json.loads((caches["top4"] / "train.json").read_text())
    assert stored["topk"] == 4 and stored["dtype"] == "fp32"
    assert stored["tokens"] == sum(lengths) and stored["sentences"] == len(lengths)
    offsets = np.load(caches["top4"] / "train.offsets.npy")
    assert np.diff(offsets).tolist() == lengths
    assert np.load(caches["full"] / "train.indices.npy").shape == (sum(lengths), vocab_size)


def test_stale_cache_after_rebinarising_is_refused(tmp_path, toy_text, toy_bin, caches):
    changed = tmp_path / "text"
    write_corpus(changed, train=800, valid=80, test=80, seed=3)
    for side in ("src", "tgt"):  # one sentence fewer: every later row would shift by one sentence
        lines = (changed / f"train.{side}").read_text().splitlines(keepends=True)
        (changed / f"train.{side}").write_text("".join(lines[1:]))
    rebinarised = tmp_path / "bin"
    fairseq_cli(
        "fairseq-preprocess",
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        "--srcdict",
        toy_bin / "dict.src.txt",
        "--tgtdict",
        toy_bin / "dict.tgt.txt",
        "--trainpref",
        changed / "train",
        "--validpref",
        changed / "valid",
        "--destdir",
        rebinarised,
        "--workers",
        "1",
    )
    save_dir = tmp_path / "save"
    result = train(rebinarised, save_dir, *STUDENT, "--teacher-cache", caches["top4"], "--max-epoch", "1", check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "does not match the 'train' data" in errors[0], result.stderr[-1500:]
    assert "sentences (cache: 800, data: 799)" in errors[0]
    assert not save_dir.exists() or not any(save_dir.iterdir())


def test_interrupted_dump_never_loads_and_keeps_the_previous_cache(tmp_path, toy_bin, caches):
    task = build_training(toy_bin, "--criterion", "label_smoothed_teacher")[0]
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    data = Fingerprint.of_data("valid", dataset, task.target_dictionary, "x", 4, "fp32")
    lengths = np.asarray(dataset.tgt_sizes)
    fresh = tmp_path / "fresh"
    writer = CacheWriter(fresh, data, lengths)
    writer.write_batch(
        np.array([0]), lengths[:1], np.zeros((lengths[0], 4), np.int32), np.zeros((lengths[0], 4), np.float32)
    )
    with pytest.raises(DataError, match="no complete cache for subset 'valid'"):
        TeacherCache(fresh, "valid", data, len(task.target_dictionary))
    with pytest.raises(RuntimeError, match="never scored"):
        writer.close()
    with pytest.raises(DataError, match="no complete cache"):
        TeacherCache(fresh, "valid", data, len(task.target_dictionary))

    before = np.load(caches["top4"] / "valid.logits.npy").copy()
    CacheWriter(caches["top4"], data, lengths)  # a --force re-dump that dies before finishing
    reloaded = TeacherCache(caches["top4"], "valid", data, len(task.target_dictionary))
    np.testing.assert_array_equal(reloaded.logits, before)


@pytest.mark.parametrize(
    "extra, message",
    [(["--topk", "0"], "--topk must be >= 1, got 0"), (["--subset", "nosuchsplit"], "subset 'nosuchsplit' not found")],
)
def test_dump_bad_input_is_one_line_before_writing(tmp_path, toy_bin, teacher_checkpoint, extra, message):
    out = tmp_path / "cache"
    result = dump_teacher(toy_bin, teacher_checkpoint, out, *extra, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], result.stderr[-1500:]
    assert not out.exists()


def test_training_without_a_valid_cache_names_the_command(tmp_path, toy_bin, teacher_checkpoint):
    out = tmp_path / "train-only"
    dump_teacher(toy_bin, teacher_checkpoint, out, "--subset", "train")
    result = train(toy_bin, tmp_path / "save", *STUDENT, "--teacher-cache", out, "--max-epoch", "1", check=False)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(errors) == 1
    assert "no complete cache for subset 'valid'" in errors[0] and "lskd-dump-teacher" in errors[0]


def test_student_trains_from_cache_without_loading_a_teacher(tmp_path, toy_bin, caches):
    result = train(toy_bin, tmp_path / "save", *STUDENT, "--teacher-cache", caches["top4"], "--max-epoch", "1")
    assert "kd_loss" in result.stdout
    task, _, _ = build_training(toy_bin, *STUDENT, "--teacher-cache", caches["top4"])
    assert task.teacher is None
