"""A cached top-k teacher with the statistics the transfers read: the tail bucket and standardisation from
the cache equal the live teacher's, the dropped-mass report equals the mass computed here from the
teacher's logits, and a cache without what a run needs is refused in one line before any step."""

import json

import numpy as np
import pytest
import torch

from fixtures.fairseq_runs import build_training, dump_teacher, first_batch, train
from lskd.errors import DataError
from lskd_fairseq.teacher_cache import DROPPED_MASS_QUANTILES, Fingerprint, TeacherCache

pytestmark = pytest.mark.slow  # trains a teacher and dumps caches through the CLI

KD = ["--task", "translation_kd", "--criterion", "word_kd", "--kd-temperature", "2", "--kd-weight", "0.9"]
STATS = ["--tail-temperatures", "2", "1", "--standardization-stats", "--dtype", "fp32"]


@pytest.fixture(scope="module")
def vocab_size(toy_bin):
    return sum(1 for _ in open(toy_bin / "dict.tgt.txt")) + 4


@pytest.fixture(scope="module")
def caches(tmp_path_factory, toy_bin, teacher_checkpoint, vocab_size):
    """top-4 and full-vocabulary fp32 caches with statistics at T = 1 and 2, and a plain top-4 one."""
    made = {}
    for name, k, extra in (("top4", 4, STATS), ("full", vocab_size, STATS), ("plain", 4, [])):
        out = tmp_path_factory.mktemp(f"cache-{name}")
        for subset in ("train", "valid"):
            dump_teacher(toy_bin, teacher_checkpoint, out, "--subset", subset, "--topk", k, *extra)
        made[name] = out
    return made


def cached_and_online(toy_bin, teacher_checkpoint, cache, transfer_flags, online_flags):
    cached_task, model, cached_criterion = build_training(toy_bin, *KD, "--teacher-cache", cache, *transfer_flags)
    online_task, _, online_criterion = build_training(
        toy_bin, *KD, "--teacher-path", teacher_checkpoint, *transfer_flags, *online_flags
    )
    cached_batch, online_batch = first_batch(cached_task), first_batch(online_task)
    online_task.attach_teacher_outputs(online_batch, model)
    with torch.no_grad():
        return cached_criterion(model, cached_batch), online_criterion(model, online_batch)


@pytest.mark.parametrize(
    "transfer_flags",
    [
        ["--kd-topk-tail"],
        ["--kd-topk-tail", "--kd-divergence", "jsd", "--kd-logit-standardization"],
        ["--kd-topk-tail", "--kd-divergence", "reverse_kl", "--kd-teacher-temperature", "1"],
        ["--kd-divergence", "tvd", "--kd-logit-standardization"],
    ],
)
def test_cached_statistics_give_the_live_teachers_transfer(toy_bin, teacher_checkpoint, caches, transfer_flags):
    (cached, _, cached_log), (online, _, online_log) = cached_and_online(
        toy_bin, teacher_checkpoint, caches["top4"], transfer_flags, ["--kd-topk", "4"]
    )
    torch.testing.assert_close(cached, online, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(cached_log["kd_loss"], online_log["kd_loss"], rtol=1e-5, atol=1e-4)


def test_tail_from_a_full_vocabulary_cache_is_the_full_teacher(toy_bin, teacher_checkpoint, caches):
    flags = ["--kd-topk-tail", "--kd-divergence", "jsd"]
    cached_task, model, cached_criterion = build_training(toy_bin, *KD, "--teacher-cache", caches["full"], *flags)
    online_task, _, online_criterion = build_training(
        toy_bin, *KD, "--teacher-path", teacher_checkpoint, "--kd-divergence", "jsd"
    )
    cached_batch, online_batch = first_batch(cached_task), first_batch(online_task)
    online_task.attach_teacher_outputs(online_batch, model)
    with torch.no_grad():
        torch.testing.assert_close(
            cached_criterion(model, cached_batch)[0], online_criterion(model, online_batch)[0], rtol=1e-5, atol=1e-4
        )


def test_dropped_mass_report_equals_the_mass_of_the_teachers_logits(caches):
    """The full-vocabulary cache holds every logit of every token: the mass outside the first four (sorted)
    at each temperature is what the top-4 dump must report."""
    full = np.load(caches["full"] / "valid.logits.npy").astype(np.float64)
    report = json.loads((caches["top4"] / "valid.dropped_mass.json").read_text())
    assert report["tokens"] == len(full)
    assert sorted(report["temperatures"]) == ["1", "2"]
    for temperature in (1.0, 2.0):
        scaled = full / temperature
        probs = np.exp(scaled - scaled.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        mass = probs[:, 4:].sum(-1)
        stored = report["temperatures"][f"{temperature:g}"]
        assert stored["mean"] == pytest.approx(mass.mean(), rel=1e-5)
        for level in DROPPED_MASS_QUANTILES:
            exact = np.quantile(mass, level, method="inverted_cdf")
            assert stored["quantiles"][f"{level:g}"] == pytest.approx(exact, rel=0.02), level
    plain = json.loads((caches["plain"] / "valid.dropped_mass.json").read_text())
    assert sorted(plain["temperatures"]) == ["1"]


def refused(result, save_dir, *fragments):
    assert result.returncode != 0, result.stdout[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lskd error:"), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not save_dir.exists() or not any(save_dir.iterdir())


@pytest.mark.parametrize(
    "cache, flags, fragments",
    [
        ("top4", ["--kd-topk-tail", "--kd-teacher-temperature", "3"], ["stores it at: 1, 2", "--tail-temperatures 3"]),
        ("plain", ["--kd-topk-tail"], ["stores it at: none", "--tail-temperatures 2"]),
        ("plain", ["--kd-logit-standardization"], ["mean and std", "--standardization-stats"]),
    ],
)
def test_a_cache_without_what_the_transfer_reads_is_refused(tmp_path, toy_bin, caches, cache, flags, fragments):
    save_dir = tmp_path / "save"
    result = train(toy_bin, save_dir, *KD, "--teacher-cache", caches[cache], *flags, "--max-update", "2", check=False)
    refused(result, save_dir, *fragments)


def test_tail_without_a_topk_teacher_is_refused(tmp_path, toy_bin, teacher_checkpoint):
    save_dir = tmp_path / "save"
    result = train(
        toy_bin, save_dir, *KD, "--teacher-path", teacher_checkpoint, "--kd-topk-tail", "--max-update", "2", check=False
    )
    refused(result, save_dir, "--kd-topk-tail", "--kd-topk K")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tail-temperatures", "0"], "--tail-temperatures: KD temperature must be > 0, got 0.0"),
        (["--tail-temperatures", "2", "2"], "lists a temperature twice"),
    ],
)
def test_dump_refuses_bad_tail_temperatures_before_writing(tmp_path, toy_bin, teacher_checkpoint, extra, message):
    out = tmp_path / "cache"
    result = dump_teacher(toy_bin, teacher_checkpoint, out, *extra, check=False)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(errors) == 1 and message in errors[0], result.stderr[-1500:]
    assert not out.exists()


def test_fingerprint_records_the_statistics_and_a_missing_file_is_refused(tmp_path, toy_bin, caches):
    fingerprint = json.loads((caches["top4"] / "valid.json").read_text())
    assert fingerprint["tail_temperatures"] == [1.0, 2.0] and fingerprint["standardization"] is True
    task, _, _ = build_training(toy_bin, "--criterion", "label_smoothed_teacher")
    task.load_dataset("valid")
    data = Fingerprint.of_data("valid", task.dataset("valid"), task.target_dictionary)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in caches["top4"].glob("valid.*"):
        if path.name != "valid.moments.npy":
            (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="valid.moments.npy cannot be read"):
        TeacherCache(copy, "valid", data, len(task.target_dictionary))


def test_fairseq_train_refuses_bad_transfer_flags_before_any_step(tmp_path, toy_bin, caches):
    save_dir = tmp_path / "save"
    flags = ["--kd-divergence", "jsd", "--kd-jsd-beta", "1"]
    result = train(toy_bin, save_dir, *KD, "--teacher-cache", caches["top4"], *flags, "--max-update", "2", check=False)
    refused(result, save_dir, "--kd-jsd-beta: JSD beta must be in (0, 1) exclusive, got 1.0")
    result = train(
        toy_bin, save_dir, *KD, "--teacher-cache", caches["top4"], "--kd-divergence", "hellinger", check=False
    )
    assert result.returncode == 2 and "invalid choice: 'hellinger'" in result.stderr
    assert "reverse_kl" in result.stderr.splitlines()[-1]
