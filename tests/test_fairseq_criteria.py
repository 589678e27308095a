"""The fairseq criteria against fairseq's own criterion and the loss core's float64 specification, on toy batches."""

import copy

import pytest
import torch
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

from fixtures.fairseq_runs import build_training, first_batch
from fixtures.loss_paths import require_row_kernel
from lskd.errors import InvalidConfig
from lskd.losses import fairseq_epsilon
from lskd.reference import kd_objective as specified_objective
from lskd_fairseq.checkpoints import load_frozen_model
from lskd_fairseq.criterions.label_smoothed_teacher import LabelSmoothedTeacherCriterion
from lskd_fairseq.criterions.word_kd import WordKDCriterion


def loss_and_grads(criterion, model, sample):
    model.zero_grad()
    loss, sample_size, log = criterion(model, sample)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), log, grads


@pytest.fixture(scope="module")
def student(toy_bin):
    task, model, _ = build_training(toy_bin, "--criterion", "label_smoothed_teacher")
    return task, model, first_batch(task)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.3])
def test_label_smoothed_teacher_equals_fairseq_criterion(student, alpha):
    task, model, sample = student
    vocab = len(task.target_dictionary)
    ours = LabelSmoothedTeacherCriterion(task, sentence_avg=False, label_smoothing=alpha)
    reference = LabelSmoothedCrossEntropyCriterion(
        task, sentence_avg=False, label_smoothing=fairseq_epsilon(alpha, vocab), report_accuracy=True
    )
    loss, log, grads = loss_and_grads(ours, model, sample)
    ref_loss, ref_log, ref_grads = loss_and_grads(reference, model, sample)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(log["nll_loss"], ref_log["nll_loss"])
    assert (log["n_correct"], log["total"]) == (ref_log["n_correct"], ref_log["total"])
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6)


def with_teacher(task, teacher, sample):
    with torch.no_grad():
        logits, _ = teacher(**sample["net_input"])
    return {**sample, "teacher": {"logits": logits}}


def test_word_kd_with_zero_weight_is_label_smoothed_teacher(student):
    task, model, sample = student
    teacher = copy.deepcopy(model).eval()
    kd = WordKDCriterion(task, False, label_smoothing=0.1, kd_temperature=2.0, kd_weight=0.0)
    ls = LabelSmoothedTeacherCriterion(task, False, label_smoothing=0.1)
    loss, log, grads = loss_and_grads(kd, model, with_teacher(task, teacher, sample))
    ref_loss, ref_log, ref_grads = loss_and_grads(ls, model, sample)
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(log["nll_loss"], ref_log["nll_loss"])
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name])


def specified_word_kd(student_logits, teacher_logits, target, pad, temperature, weight, alpha):
    """Tan et al.'s loss of each target position from the core's specification, in float64 (0 at padding)."""
    vocab = student_logits.size(-1)
    return specified_objective(
        student_logits.double().reshape(-1, vocab),
        target.reshape(-1),
        temperature,
        weight,
        alpha,
        teacher_logits=teacher_logits.double().reshape(-1, vocab),
        ignore_index=pad,
        reduce=False,
    ).loss


@pytest.mark.parametrize("temperature", [1.0, 3.0, 64.0])
@pytest.mark.slow
def test_word_kd_equals_float64_formula(student, teacher_checkpoint, temperature):
    task, model, sample = student
    teacher = load_frozen_model(str(teacher_checkpoint), task)
    kd = WordKDCriterion(task, False, label_smoothing=0.1, kd_temperature=temperature, kd_weight=0.9)
    batch = with_teacher(task, teacher, sample)
    with torch.no_grad():
        loss, _, _ = kd(model, batch)
        student_logits, _ = model(**sample["net_input"])
    expected = specified_word_kd(
        student_logits,
        batch["teacher"]["logits"],
        sample["target"],
        task.target_dictionary.pad(),
        temperature,
        0.9,
        0.1,
    )
    assert loss.item() == pytest.approx(expected.sum().item(), rel=1e-5)


def unreduced(criterion, model, sample):
    """``criterion(..., reduce=False)`` without dropout, as fairseq's scorers call it."""
    model.eval()
    try:
        with torch.no_grad():
            return criterion(model, sample, reduce=False)
    finally:
        model.train()


def test_unreduced_label_smoothed_teacher_equals_fairseq_per_token(student):
    task, model, sample = student
    alpha = 0.1
    ours = LabelSmoothedTeacherCriterion(task, sentence_avg=False, label_smoothing=alpha)
    reference = LabelSmoothedCrossEntropyCriterion(
        task, sentence_avg=False, label_smoothing=fairseq_epsilon(alpha, len(task.target_dictionary))
    )
    loss, sample_size, log = unreduced(ours, model, sample)
    ref_loss, ref_sample_size, ref_log = unreduced(reference, model, sample)
    assert loss.shape == ref_loss.shape == (sample["target"].numel(), 1)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log["nll_loss"], ref_log["nll_loss"])
    assert sample_size == ref_sample_size
    padding = sample["target"].reshape(-1).eq(task.target_dictionary.pad())
    assert padding.any() and loss[padding].eq(0).all()


def test_unreduced_word_kd_is_the_per_token_formula(student, teacher_checkpoint):
    task, model, sample = student
    teacher = load_frozen_model(str(teacher_checkpoint), task)
    batch = with_teacher(task, teacher, sample)
    kd = WordKDCriterion(task, False, label_smoothing=0.1, kd_temperature=3.0, kd_weight=0.9)
    loss, _, log = unreduced(kd, model, batch)
    model.eval()
    with torch.no_grad():
        reduced, _, _ = kd(model, batch)
        student_logits, _ = model(**sample["net_input"])
    model.train()
    expected = specified_word_kd(
        student_logits, batch["teacher"]["logits"], sample["target"], task.target_dictionary.pad(), 3.0, 0.9, 0.1
    )
    assert loss.shape == log["kd_loss"].shape == (len(expected), 1)
    torch.testing.assert_close(loss.view(-1).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss.sum(), reduced, rtol=1e-5, atol=1e-4)


def test_kd_loss_is_zero_when_student_is_the_teacher(student):
    task, model, sample = student
    model.eval()
    kd = WordKDCriterion(task, False, label_smoothing=0.1, kd_temperature=3.0, kd_weight=0.9)
    with torch.no_grad():
        _, _, log = kd(model, with_teacher(task, model, sample))
    model.train()
    assert abs(log["kd_loss"].item()) < 1e-3 * log["ntokens"]


def test_online_topk_equal_to_vocabulary_is_full_vocabulary(student):
    task, model, sample = student
    teacher = copy.deepcopy(model).eval()
    vocab = len(task.target_dictionary)
    batch = with_teacher(task, teacher, sample)
    full = WordKDCriterion(task, False, 0.1, kd_temperature=2.0, kd_weight=0.9)
    top = WordKDCriterion(task, False, 0.1, kd_temperature=2.0, kd_weight=0.9, kd_topk=vocab)
    with torch.no_grad():
        torch.testing.assert_close(full(model, batch)[0], top(model, batch)[0])


@pytest.mark.parametrize("topk", [0, 4])
def test_word_kd_row_kernel_and_eager_passes_train_alike(student, topk):
    """The criterion's --kd-kernel: the row kernel and the eager passes give one loss and one gradient for
    every parameter (float32 CPU logits, which the kernel takes)."""
    require_row_kernel()
    task, model, sample = student
    teacher = copy.deepcopy(model).eval()
    batch = with_teacher(task, teacher, sample)
    runs = {}
    for kernel in ("eager", "cpu"):
        criterion = WordKDCriterion(task, False, 0.1, kd_temperature=2.0, kd_weight=0.9, kd_topk=topk, kd_kernel=kernel)
        runs[kernel] = loss_and_grads(criterion, model, batch)
    (eager_loss, eager_log, eager_grads), (loss, log, grads) = runs["eager"], runs["cpu"]
    torch.testing.assert_close(loss, eager_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(log["kd_loss"], eager_log["kd_loss"], rtol=1e-5, atol=1e-6)
    assert grads.keys() == eager_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradients_finite_at_t64_in_fp16(student):
    task, model, sample = student
    half = copy.deepcopy(model).half()
    teacher = copy.deepcopy(model).half().eval()
    kd = WordKDCriterion(task, False, 0.1, kd_temperature=64.0, kd_weight=0.9)
    loss, _, grads = loss_and_grads(kd, half, with_teacher(task, teacher, sample))
    assert torch.isfinite(loss)
    assert all(torch.isfinite(g.float()).all() for g in grads.values())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"kd_temperature": 0.0}, "got 0.0"),
        ({"kd_weight": -0.1}, "got -0.1"),
        ({"label_smoothing": 1.0}, "got 1.0"),
        ({"kd_kernel": "fast"}, r"KD kernel must be one of \('auto', 'eager', 'cpu'\), got 'fast'"),
    ],
)
def test_bad_settings_are_refused_at_construction(student, settings, message):
    task = student[0]
    values = {"label_smoothing": 0.1, "kd_temperature": 1.0, "kd_weight": 0.5, **settings}
    with pytest.raises(InvalidConfig, match=message):
        WordKDCriterion(task, False, **values)


def test_word_kd_without_teacher_says_what_to_use(student):
    task, model, sample = student
    kd = WordKDCriterion(task, False, 0.1, kd_temperature=1.0, kd_weight=0.5)
    with pytest.raises(InvalidConfig, match="translation_kd"):
        kd(model, sample)


ADAPTIVE_SOFTMAX = ["--adaptive-softmax-cutoff", "20,40"]


@pytest.mark.parametrize("criterion", ["label_smoothed_teacher", "word_kd"])
def test_a_model_with_an_adaptive_softmax_is_refused_when_the_criterion_is_built(toy_bin, criterion):
    kd = ["--task", "translation_kd", "--kd-temperature", "2"] if criterion == "word_kd" else []
    with pytest.raises(InvalidConfig, match="^--adaptive-softmax-cutoff: the lskd criteria need"):
        build_training(toy_bin, "--criterion", criterion, *kd, *ADAPTIVE_SOFTMAX)


def test_a_model_with_an_adaptive_softmax_is_refused_by_the_criterion_itself(toy_bin):
    """A model built elsewhere (here for fairseq's adaptive_loss criterion) reaches the criterion's forward."""
    task, model, _ = build_training(
        toy_bin, "--criterion", "adaptive_loss", "--ddp-backend", "legacy_ddp", *ADAPTIVE_SOFTMAX
    )
    assert model.decoder.adaptive_softmax is not None
    criterion = LabelSmoothedTeacherCriterion(task, sentence_avg=False, label_smoothing=0.1)
    with pytest.raises(InvalidConfig, match="--adaptive-softmax-cutoff"):
        criterion(model, first_batch(task))
