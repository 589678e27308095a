"""Criterion ``word_kd``: word-level knowledge distillation (Tan et al.'s formulation).

``loss = w · T² · CE(softmax(teacher/T), log_softmax(student/T)) + (1 - w) · LS-NLL(a)`` summed over
target tokens. The teacher's outputs arrive in the batch from the ``translation_kd`` task, either as full
logits (``--teacher-path``; optionally cut to the top ``--kd-topk`` here) or as a cached top-k.
"""

import math
from dataclasses import dataclass, field

from fairseq.criterions import register_criterion
from fairseq.dataclass import ChoiceEnum
from fairseq.logging import metrics

from lskd.checks import check_kd_weight, check_temperature
from lskd.cpu_kernel import KD_KERNELS, check_kernel
from lskd.errors import InvalidConfig
from lskd.losses import kd_objective, topk_teacher
from lskd_fairseq.criterions.label_smoothed_teacher import LabelSmoothedTeacherConfig, SmoothedTargetCriterion
from lskd_fairseq.tasks.translation_kd import check_word_kd_task


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
    ):
        super().__init__(task, sentence_avg, label_smoothing, ignore_prefix_size)
        check_temperature(kd_temperature)
        check_kd_weight(kd_weight)
        self.kernel = str(kd_kernel)
        check_kernel(self.kernel)
        if kd_topk < 0:
            raise InvalidConfig(f"--kd-topk must be >= 0 (0 = full vocabulary), got {kd_topk}")
        self.temperature = kd_temperature
        self.kd_weight = kd_weight
        self.kd_topk = kd_topk

    @classmethod
    def build_criterion(cls, cfg, task):
        check_word_kd_task(task, cfg.kd_topk)  # as fairseq builds it, so a bad run stops before any step
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
                return {"teacher_logits": logits}
            indices, values = topk_teacher(logits, self.kd_topk)
        else:
            indices, values = self.drop_prefix(teacher["topk_indices"]), self.drop_prefix(teacher["topk_logits"])
        return {"teacher_topk_indices": indices, "teacher_topk_logits": values}

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"])
        logits, target = self.logits_and_target(model, net_output, sample)
        objective = kd_objective(
            logits,
            target,
            temperature=self.temperature,
            kd_weight=self.kd_weight,
            smoothing=self.smoothing,
            ignore_index=self.padding_idx,
            reduce=False,
            kernel=self.kernel,
            **self.teacher_outputs(sample),
        )
        loss, nll_loss, kd_loss = (self.reduced(t, reduce) for t in (objective.loss, objective.nll, objective.kd_kl))
        sample_size, log = self.logging_output(sample, loss, nll_loss, logits, target)
        log["kd_loss"] = kd_loss.data
        return loss, sample_size, log

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        kd_loss = sum(log.get("kd_loss", 0) for log in logging_outputs)
        metrics.log_scalar("kd_loss", kd_loss / ntokens / math.log(2), ntokens, round=3)
