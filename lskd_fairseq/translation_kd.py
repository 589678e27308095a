"""Task ``translation_kd``: translation whose batches carry a frozen teacher's outputs for ``word_kd``.

The teacher lives on the task, not on the model or the criterion: fairseq's trainer would otherwise
hand its weights to the optimizer, wrap them in DDP and save them in every student checkpoint.
"""
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd_fairseq.teacher import load_teacher


@dataclass
class TranslationKDConfig(TranslationConfig):
    teacher_path: Optional[str] = field(
        default=None, metadata={"help": "fairseq checkpoint of the teacher (same dictionaries as the data)"}
    )


@register_task("translation_kd", dataclass=TranslationKDConfig)
class TranslationKDTask(TranslationTask):
    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        self.teacher = None

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if self.cfg.teacher_path and not from_checkpoint and self.teacher is None:
            self.teacher = load_teacher(self.cfg.teacher_path, self)
        return model

    def teacher_for(self, model) -> torch.nn.Module:
        """The teacher on the student's device and in its floating-point dtype (fp16/bf16 runs)."""
        reference = next(model.parameters())
        current = next(self.teacher.parameters())
        if current.device != reference.device or current.dtype != reference.dtype:
            self.teacher.to(device=reference.device, dtype=reference.dtype)
        return self.teacher

    def attach_teacher_outputs(self, sample, model) -> None:
        if self.teacher is None or "net_input" not in sample:
            return
        teacher = self.teacher_for(model)
        with torch.no_grad():
            logits, _ = teacher(**sample["net_input"])
        sample["teacher"] = {"logits": logits}

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self.attach_teacher_outputs(sample, model)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        self.attach_teacher_outputs(sample, model)
        return super().valid_step(sample, model, criterion)
