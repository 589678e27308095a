"""A row of student logits holding NaN or +inf (or only -inf) has no distribution. The compiled row kernel and
the eager passes used to report it differently (the kernel: NLL +inf and one non-finite gradient entry; the
eager passes: NaN and the whole row). Both now give NaN in every term and every gradient entry of that row,
and leave the other rows exactly as without it."""

import math

import pytest
import torch

from fixtures.loss_paths import require_row_kernel
from lskd.losses import distillation_terms, kd_objective

ROWS, VOCAB = 3, 37  # 37: a vector body and a scalar tail in the kernel's loops
BAD_ROW = 1


def per_row_terms(student, teacher, kernel, temperature, smoothing, topk, hard):
    """Every per-row term of the loss, stacked [terms, rows], and the student's gradient of their sum."""
    student = student.clone().requires_grad_()
    if topk:
        values, indices = teacher.topk(4, dim=-1)
        given = dict(teacher_topk_indices=indices, teacher_topk_logits=values)
    else:
        given = dict(teacher_logits=teacher)
    if hard:
        target = torch.arange(ROWS) % VOCAB
        result = kd_objective(student, target, temperature, 0.7, smoothing, reduce=False, kernel=kernel, **given)
        terms = torch.stack([result.loss, result.nll, result.kd_kl])
    else:
        result = distillation_terms(student, temperature, kernel=kernel, **given)
        terms = torch.stack([result.cross_entropy, result.kl])
    terms.sum(0).nan_to_num(0.0).sum().backward()  # each row's own terms reach its gradient
    return terms.detach(), student.grad


@pytest.mark.parametrize("kernel", ["eager", "cpu"])
@pytest.mark.parametrize("bad", ["nan in the body", "nan in the tail", "+inf", "only -inf"])
@pytest.mark.parametrize(
    "temperature, smoothing, topk, hard",
    [(1.0, 0.0, False, True), (2.0, 0.1, False, True), (1.0, 0.1, True, True), (3.0, 0.0, True, True)]
    + [(2.0, 0.0, False, False), (1.0, 0.0, True, False)],
)
def test_a_row_without_a_distribution_is_nan_throughout_on_both_passes(kernel, bad, temperature, smoothing, topk, hard):
    if kernel == "cpu":
        require_row_kernel()
    generator = torch.Generator().manual_seed(0)
    clean = 3 * torch.randn(ROWS, VOCAB, generator=generator)
    teacher = 3 * torch.randn(ROWS, VOCAB, generator=generator)
    student = clean.clone()
    if bad == "only -inf":
        student[BAD_ROW] = -math.inf
    else:
        student[BAD_ROW, 5 if bad != "nan in the tail" else VOCAB - 1] = math.inf if bad == "+inf" else math.nan
    terms, gradient = per_row_terms(student, teacher, kernel, temperature, smoothing, topk, hard)
    assert terms[:, BAD_ROW].isnan().all(), terms[:, BAD_ROW]
    assert gradient[BAD_ROW].isnan().all(), int(gradient[BAD_ROW].isnan().sum())
    reference_terms, reference_gradient = per_row_terms(clean, teacher, kernel, temperature, smoothing, topk, hard)
    others = [row for row in range(ROWS) if row != BAD_ROW]
    torch.testing.assert_close(terms[:, others], reference_terms[:, others], rtol=0, atol=0)
    torch.testing.assert_close(gradient[others], reference_gradient[others], rtol=0, atol=0)
