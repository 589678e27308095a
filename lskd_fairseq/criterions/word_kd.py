"""Criterion ``word_kd``: word-level knowledge distillation (Tan et al.'s formulation and its variants).

``loss = w · T² · CE(softmax(teacher/T), log_softmax(student/T)) + (1 - w) · LS-NLL(a)`` summed over
target tokens; ``--kd-divergence`` and the other transfer flags replace the KD term by another divergence
(``lskd.divergences``, docs/transfers.md). The teacher's outputs arrive in the batch from the
``translation_kd`` task, either as full logits (``--teacher-path``; optionally cut to the top ``--kd-topk``
here) or as a cached top-k. The logs hold ``kd_loss``, the forward KL, whatever the transfer, and the
chosen divergence as ``kd_<name>``.
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from lskd.checks import DIVERGENCES, check_kd_weight, check_temperature
from lskd.cpu_kernel import KD_KERNELS, check_kernel
from lskd.divergences import Transfer
from lskd.errors import InvalidConfig
from lskd.transfer_loss import TeacherRows, topk_teacher_rows, transfer_objective
from lskd_fairseq.criterions.label_smoothed_teacher import LabelSmoothedTeacherConfig, SmoothedTargetCriterion
from lskd_fairseq.tasks.translation_kd import check_word_kd_task

logger = logging.getLogger(__name__)


@dataclass
class WordKDConfig(LabelSmoothedTeacherConfig):
    kd_temperature: float = field(default=1.0, metadata={"help": "distillation temperature T > 0"})
    kd_weight: float = field(
        default=0.9, metadata={"help": "weight w in [0, 1] of the KD term; 1 - w goes to the LS-NLL term"}
    )
    kd_topk: int = field(
        default=0,
        metadata={"help": "distil from the online teacher's top-k tokens only (Tan et al. use 4); 0 = full vocabulary"},
    )
    kd_kernel: ChoiceEnum(KD_KERNELS) = field(
        default="auto",
        metadata={
            "help": "how the loss runs: auto = float32 CPU logits through the fused row kernel (compiled once per "
            "machine) where it builds, else eager torch passes; eager; cpu = require the kernel"
        },
    )
    kd_divergence: ChoiceEnum(DIVERGENCES) = field(
        default="kl", metadata={"help": "what the KD term measures between teacher and student (docs/transfers.md)"}
    )
    kd_jsd_beta: float = field(
        default=0.5, metadata={"help": "jsd: teacher weight beta in (0, 1) of the mixture (GKD); 0.5 = symmetric JSD"}
    )
    kd_skew: float = field(default=0.1, metadata={"help": "skew_kl, skew_reverse_kl: skew in (0, 1) (DistiLLM)"})
    kd_teacher_temperature: Optional[float] = field(
        default=None, metadata={"help": "the teacher's temperature (default: --kd-temperature)"}
    )
    kd_logit_standardization: bool = field(
        default=False, metadata={"help": "z-score each row's logits before its temperature (Sun et al., 2024)"}
    )
    kd_topk_tail: bool = field(
        default=False,
        metadata={"help": "top-k teacher: add a (k+1)-th outcome holding the mass outside its k tokens"},
    )


@register_criterion("word_kd", dataclass=WordKDConfig)
class WordKDCriterion(SmoothedTargetCriterion):
    def __init__(
        self,
        task,
        sentence_avg,
        label_smoothing,
        kd_temperature,
        kd_weight,
        kd_topk=0,
        ignore_prefix_size=0,
        kd_kernel="auto",
        kd_divergence="kl",
        kd_jsd_beta=0.5,
        kd_skew=0.1,
        kd_teacher_temperature=None,
        kd_logit_standardization=False,
        kd_topk_tail=False,
    ):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size)
        check_temperature(kd_temperature)
        check_kd_weight(kd_weight)
        self.kernel = str(kd_kernel)
        check_kernel(self.kernel)
        if kd_topk < 0:
            raise InvalidConfig(f"--kd-topk must be >= 0 (0 = full vocabulary), got {kd_topk}")
        self.transfer = transfer_from_flags(
            temperature=kd_temperature,
            divergence=str(kd_divergence),
            beta=kd_jsd_beta,
            skew=kd_skew,
            teacher_temperature=kd_teacher_temperature,
            standardize=kd_logit_standardization,
            tail=kd_topk_tail,
        )
        self.temperature = kd_temperature
        self.kd_weight = kd_weight
        self.kd_topk = kd_topk
        logger.info("word_kd transfer: %s", self.transfer.describe())

    @classmethod
    def build_criterion(cls, cfg, task):
        # As fairseq builds it, so a bad run stops before any step.
        transfer = transfer_from_flags(
            temperature=cfg.kd_temperature,
            divergence=str(cfg.kd_divergence),
            beta=cfg.kd_jsd_beta,
            skew=cfg.kd_skew,
            teacher_temperature=cfg.kd_teacher_temperature,
            standardize=cfg.kd_logit_standardization,
            tail=cfg.kd_topk_tail,
        )
        check_word_kd_task(task, cfg.kd_topk, transfer)
        return super().build_criterion(cfg, task)

    def teacher_outputs(self, sample):
        teacher = sample.get("teacher")
        if teacher is None:
            raise InvalidConfig(
                "criterion word_kd needs a teacher: use --task translation_kd with --teacher-path or --teacher-cache"
            )
        if "logits" in teacher:
            logits = self.drop_prefix(teacher["logits"])
            if self.kd_topk == 0:
                return TeacherRows(logits=logits)
            return topk_teacher_rows(logits, self.kd_topk, self.transfer)
        rows = {key: self.drop_prefix(value) if torch.is_tensor(value) else value for key, value in teacher.items()}
        return cached_teacher_rows(rows, self.transfer)

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        logits, target = self.logits_and_target(model, net_output, sample)
        objective = transfer_objective(
            logits,
            target,
            self.teacher_outputs(sample),
            self.transfer,
            kd_weight=self.kd_weight,
            smoothing=self.smoothing,
            ignore_index=self.padding_idx,
            reduce=False,
            kernel=self.kernel,
        )
        loss, nll_loss, kd_loss = (self.reduced(t, reduce) for t in (objective.loss, objective.nll, objective.kd_kl))
        sample_size, log = self.logging_output(sample, loss, nll_loss, logits, target)
        log["kd_loss"] = kd_loss.data
        if self.transfer.divergence != "kl":
            log[f"kd_{self.transfer.divergence}"] = self.reduced(objective.divergence, reduce).data
        return loss, sample_size, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        """Per target token; the KL-based terms in bits as fairseq logs its losses, ``kd_tvd`` as it is."""
        super().reduce_metrics(logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        for name in ("loss", *DIVERGENCES[1:]):
            key = f"kd_{name}"
            if any(key in log for log in logging_outputs):
                total = sum(log.get(key, 0) for log in logging_outputs)
                unit = 1.0 if name == "tvd" else math.log(2)
                metrics.log_scalar(key, total / ntokens / unit, ntokens, round=3)


def transfer_from_flags(*, temperature, divergence, beta, skew, teacher_temperature, standardize, tail) -> Transfer:
    """The criterion's transfer; a bad value is refused naming its flag."""
    check_temperature(temperature)
    flags = {"JSD beta": "--kd-jsd-beta", "skew": "--kd-skew", "KD temperature": "--kd-teacher-temperature"}
    try:
        return Transfer(
            divergence=divergence,
            temperature=temperature,
            teacher_temperature=teacher_temperature,
            jsd_beta=beta,
            skew=skew,
            standardize=standardize,
            tail=tail,
        )
    except InvalidConfig as error:
        text = str(error)
        name = next((flag for key, flag in flags.items() if text.startswith(key)), "--kd-divergence")
        raise InvalidConfig(f"{name}: {text}") from None


def cached_teacher_rows(teacher: dict, transfer: Transfer) -> TeacherRows:
    """A cached top-k teacher's rows with the stored statistics the transfer reads (the task has checked
    that the cache holds them)."""
    rows = TeacherRows(topk_indices=teacher["topk_indices"], topk_logits=teacher["topk_logits"])
    if transfer.standardize:
        rows.mean, rows.std = teacher["moments"].unbind(-1)
    if transfer.tail:
        column = list(teacher["tail_temperatures"]).index(transfer.teacher_t)
        key = "standardized_log_normalizers" if transfer.standardize else "log_normalizers"
        rows.log_normalizer = teacher[key][:, column]
    return rows
