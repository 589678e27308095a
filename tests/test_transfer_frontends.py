"""The transfers through both front-ends: word_kd and lskd-vision give the core's per-row values for the
same logits, log the forward KL beside the chosen divergence, and refuse bad settings in one line."""

import json
import math

import pytest
import torch

from fixtures.fairseq_runs import build_training
from lskd.checks import DIVERGENCES
from lskd.divergences import Transfer
from lskd.errors import InvalidConfig
from lskd.transfer_loss import TeacherRows, topk_teacher_rows, transfer_objective
from lskd_fairseq.criterions.word_kd import WordKDCriterion
from lskd_vision.cli import main as vision_main
from lskd_vision.config import build_config
from lskd_vision.engine import StudentObjective
from lskd_vision.models import build_model


class GivenLogits(torch.nn.Module):
    """A stand-in model whose output is fixed logits [B, T, V], so a criterion scores exactly them."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, **net_input):
        return self.logits, None

    def get_targets(self, sample, net_output):
        return sample["target"]


@pytest.fixture(scope="module")
def task(toy_bin):
    task, _, _ = build_training(toy_bin, "--criterion", "label_smoothed_teacher")
    return task


def batch(task, seed=0, steps=5):
    vocab = len(task.target_dictionary)
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(3, steps, vocab, generator=generator) * 3
    teacher = torch.randn(3, steps, vocab, generator=generator) * 3
    target = torch.randint(4, vocab, (3, steps), generator=generator)
    target[2, 3:] = task.target_dictionary.pad()
    sample = {"net_input": {}, "target": target, "ntokens": int(target.ne(1).sum()), "teacher": {"logits": teacher}}
    return student, teacher, sample


SETTINGS = [
    dict(kd_divergence="reverse_kl"),
    dict(kd_divergence="jsd", kd_jsd_beta=0.3),
    dict(kd_divergence="tvd", kd_teacher_temperature=4.0),
    dict(kd_divergence="skew_kl", kd_skew=0.2, kd_logit_standardization=True),
    dict(kd_divergence="skew_reverse_kl", kd_topk=5, kd_topk_tail=True),
    dict(kd_divergence="kl", kd_topk=5, kd_topk_tail=True, kd_logit_standardization=True),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k[3:]}={v}" for k, v in s.items()))
def test_word_kd_per_token_values_are_the_core_transfer(task, settings):
    student, teacher, sample = batch(task)
    criterion = WordKDCriterion(task, False, 0.1, kd_temperature=2.0, kd_weight=0.8, **settings)
    loss, _, log = criterion(GivenLogits(student), sample, reduce=False)
    transfer = criterion.transfer
    vocab = student.size(-1)
    rows = TeacherRows(logits=teacher.view(-1, vocab))
    if settings.get("kd_topk"):
        rows = topk_teacher_rows(teacher.view(-1, vocab), settings["kd_topk"], transfer)
    core = transfer_objective(
        student.view(-1, vocab), sample["target"].view(-1), rows, transfer, 0.8, 0.1, 1, reduce=False
    )
    torch.testing.assert_close(loss.view(-1), core.loss)
    torch.testing.assert_close(log["kd_loss"].view(-1), core.kd_kl)
    name = settings["kd_divergence"]
    if name != "kl":
        torch.testing.assert_close(log[f"kd_{name}"].view(-1), core.divergence)
    reduced, _, reduced_log = criterion(GivenLogits(student), sample)
    torch.testing.assert_close(reduced, loss.sum())
    assert reduced.shape == () and reduced_log["kd_loss"].shape == ()


@pytest.mark.parametrize("name", DIVERGENCES)
def test_vision_and_word_kd_give_the_same_values_for_the_same_logits(task, name):
    student, teacher, sample = batch(task, seed=1)
    sample["target"][2, 3:] = 5  # no padding: vision has none
    settings = dict(kd_divergence=name, kd_teacher_temperature=3.0, kd_logit_standardization=True)
    criterion = WordKDCriterion(task, False, 0.0, kd_temperature=2.0, kd_weight=0.7, **settings)
    words, _, log = criterion(GivenLogits(student), sample, reduce=False)
    vocab = student.size(-1)
    transfer = Transfer(name, 2.0, teacher_temperature=3.0, standardize=True)
    images = StudentObjective(2.0, 0.7, transfer=transfer)
    step = images(student.view(-1, vocab), sample["target"].view(-1), teacher.view(-1, vocab))
    rows = student.numel() // vocab
    torch.testing.assert_close(step.loss * rows, words.sum())
    torch.testing.assert_close(step.kd_kl * rows, log["kd_loss"].sum())


def test_vision_objective_reads_inference_mode_teacher_logits():
    generator = torch.Generator().manual_seed(2)
    student = torch.randn(4, 10, generator=generator).requires_grad_()
    with torch.inference_mode():
        teacher = torch.randn(4, 10, generator=generator)
    objective = StudentObjective(2.0, 1.0, transfer=Transfer("jsd", 2.0, standardize=True))
    objective(student, torch.tensor([0, 1, 2, 3]), teacher).loss.backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(kd_divergence="hellinger"), "--kd-divergence: KD divergence must be one of kl, reverse_kl, jsd"),
        (dict(kd_divergence="jsd", kd_jsd_beta=1.0), "--kd-jsd-beta: JSD beta must be in (0, 1)"),
        (dict(kd_skew=0.0), "--kd-skew: skew must be in (0, 1)"),
        (dict(kd_teacher_temperature=-1.0), "--kd-teacher-temperature: KD temperature must be > 0"),
        (dict(kd_teacher_temperature=float("inf")), "--kd-teacher-temperature: KD temperature must be a finite"),
        (dict(kd_teacher_temperature=1e13), "--kd-teacher-temperature: KD temperature must be <= 1e+12"),
    ],
)
def test_word_kd_refuses_bad_transfer_settings(task, settings, message):
    with pytest.raises(InvalidConfig) as error:
        WordKDCriterion(task, False, 0.1, kd_temperature=2.0, kd_weight=0.5, **settings)
    assert str(error.value).startswith(message)


def test_word_kd_logs_the_forward_kl_and_the_divergence_per_token(task):
    student, teacher, sample = batch(task, seed=3)
    criterion = WordKDCriterion(task, False, 0.1, kd_temperature=2.0, kd_weight=0.8, kd_divergence="tvd")
    _, _, log = criterion(GivenLogits(student), sample)
    assert set(log) >= {"kd_loss", "kd_tvd"}
    from fairseq.logging import metrics

    with metrics.aggregate() as aggregated:
        WordKDCriterion.reduce_metrics([log, log])
    values = aggregated.get_smoothed_values()
    assert values["kd_tvd"] == pytest.approx(round(log["kd_tvd"].item() / sample["ntokens"], 3))
    assert values["kd_loss"] == pytest.approx(round(log["kd_loss"].item() / sample["ntokens"] / 0.6931471805599453, 3))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--kd-divergence", "hellinger"], "invalid choice: 'hellinger'"),
        (["--jsd-beta", "1.5"], "--jsd-beta: JSD beta must be in (0, 1)"),
        (["--skew", "0"], "--skew: skew must be in (0, 1)"),
        (["--teacher-temperature", "0"], "--teacher-temperature: KD temperature must be > 0"),
    ],
)
def test_vision_refuses_bad_transfer_flags_in_one_line(tmp_path, capsys, flags, message):
    teacher, out = tmp_path / "teacher.pth", tmp_path / "run"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, teacher)
    argv = ["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", "2", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        vision_main(argv + flags)
    text = capsys.readouterr().err
    assert exit_info.value.code == 2
    last = text.strip().splitlines()[-1]
    assert last.startswith("lskd-vision") and "error: " in last and message in last, text
    assert not out.exists()


def test_vision_config_carries_the_transfer():
    config = build_config(
        "student",
        "digits",
        None,
        dict(out="run", teacher="t.pth", temperature=4.0, kd_divergence="jsd", jsd_beta=0.2, teacher_temperature=2.0),
    )
    assert config.transfer() == Transfer("jsd", 4.0, teacher_temperature=2.0, jsd_beta=0.2)


def test_vision_student_trains_under_another_transfer(tmp_path):
    torch.manual_seed(3)
    teacher, out = tmp_path / "teacher.pth", tmp_path / "run"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, teacher)
    transfer = ["--kd-divergence", "jsd", "--jsd-beta", "0.3", "--teacher-temperature", "4", "--logit-standardization"]
    argv = ["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", "2", "--epochs", "1"]
    vision_main([*argv, "--device", "cpu", "--out", str(out), *transfer])
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["kd_divergence"], config["jsd_beta"], config["teacher_temperature"]) == ("jsd", 0.3, 4.0)
    assert config["logit_standardization"] is True
    (epoch,) = metrics["history"]
    assert math.isfinite(epoch["train_loss"]) and epoch["train_kd_kl"] > 0  # the forward KL, logged as before
