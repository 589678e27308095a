"""One training step and one evaluation pass; the trainer and the benchmark both run exactly these."""

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lskd.divergences import Transfer
from lskd.losses import label_smoothed_nll
from lskd.transfer_loss import TeacherRows, transfer_objective
from lskd_tools.cli import torch_device


def wants_cuda(device: str) -> bool:
    """``--device auto|cuda|cpu`` (the one rule, ``lskd_tools.cli.torch_device``) as a yes/no for CUDA."""
    return torch_device(device).type == "cuda"


@dataclass
class StepLoss:
    """``loss`` is what is minimised; ``kd_kl`` (students only) is the official logged value
    ``F.kl_div(log_softmax(s/T), softmax(t/T), 'batchmean') · T²``."""

    loss: Tensor
    kd_kl: Optional[Tensor] = None


class TeacherObjective:
    """Label-smoothed cross-entropy, paper convention: target (1 - alpha)·onehot + alpha/K."""

    def __init__(self, alpha: float):
        self.alpha = alpha

    def __call__(self, logits: Tensor, target: Tensor, teacher_logits: Optional[Tensor]) -> StepLoss:
        loss, _ = label_smoothed_nll(F.log_softmax(logits.float(), dim=-1), target, self.alpha, convention="uniform")
        return StepLoss(loss=loss.mean())


class StudentObjective:
    """KD from the core with batch-mean reduction. The minimised ``loss`` is T²·CE(teacher_T, student_T)
    (+ (1 - w)·CE with labels when ``kd_weight`` < 1): same gradient as the official T²·KL, which is
    reported as ``kd_kl``. Another ``transfer`` (``lskd.divergences``) minimises its scaled divergence
    instead, and ``kd_kl`` stays the forward KL of its distributions."""

    def __init__(self, temperature: float, kd_weight: float, kernel: str = "auto", transfer: Optional[Transfer] = None):
        self.transfer = transfer or Transfer(temperature=temperature)
        self.temperature, self.kd_weight, self.kernel = temperature, kd_weight, kernel

    def __call__(self, logits: Tensor, target: Tensor, teacher_logits: Optional[Tensor]) -> StepLoss:
        terms = transfer_objective(
            logits, target, TeacherRows(logits=teacher_logits), self.transfer, self.kd_weight, kernel=self.kernel
        )
        batch = logits.size(0)
        return StepLoss(loss=terms.loss / batch, kd_kl=terms.kd_kl / batch)


@dataclass
class Precision:
    """Autocast settings: fp16 with a grad scaler on CUDA, bf16 on CPU, or plain fp32."""

    device: torch.device
    enabled: bool
    channels_last: bool

    def autocast(self):
        if not self.enabled:
            return nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def prepare(self, images: Tensor) -> Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


def teacher_logits_for(teacher: nn.Module, images: Tensor, precision: Precision) -> Tensor:
    """Frozen-teacher logits computed under ``inference_mode``. The core's KD loss saves only the teacher
    distribution it derives from them, never these inference tensors, so they need no copy."""
    with torch.inference_mode(), precision.autocast():
        return teacher(images)


def train_step(
    model: nn.Module,
    teacher: Optional[nn.Module],
    objective,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    precision: Precision,
    images: Tensor,
    target: Tensor,
) -> StepLoss:
    images = precision.prepare(images)
    target = target.to(precision.device, non_blocking=True)
    teacher_logits = teacher_logits_for(teacher, images, precision) if teacher is not None else None
    with precision.autocast():
        logits = model(images)
    step_loss = objective(logits, target, teacher_logits)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(step_loss.loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        step_loss.loss.backward()
        optimizer.step()
    return step_loss


@torch.inference_mode()
def evaluate_counts(model: nn.Module, loader, precision: Precision, num_classes: int) -> Tensor:
    """[correct@1, correct@5, summed CE, examples] over ``loader``; summed so ranks can all-reduce."""
    model.eval()
    k = min(5, num_classes)
    totals = torch.zeros(4, dtype=torch.float64, device=precision.device)
    for images, target in loader:
        images = precision.prepare(images)
        target = target.to(precision.device, non_blocking=True)
        with precision.autocast():
            logits = model(images)
        logits = logits.float()
        top = logits.topk(k, dim=-1).indices
        hits = top.eq(target.unsqueeze(-1))
        totals += torch.stack(
            [
                hits[:, 0].sum(),
                hits.any(-1).sum(),
                F.cross_entropy(logits, target, reduction="sum"),
                torch.tensor(float(target.numel()), device=precision.device),
            ]
        ).double()
    return totals


def accuracy_from_counts(totals: Tensor) -> dict:
    correct1, correct5, loss_sum, count = totals.tolist()
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "loss": loss_sum / count}
