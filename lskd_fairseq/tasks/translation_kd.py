"""Task ``translation_kd``: translation whose batches carry a teacher's outputs for ``word_kd``.

The teacher comes either live (``--teacher-path``: a frozen model run on every batch) or from an offline
top-k cache (``--teacher-cache``, written by ``lskd-dump-teacher``; no teacher model is loaded). A live
teacher lives on the task, not on the model or the criterion: fairseq's trainer would otherwise hand its
weights to the optimizer, wrap them in DDP and save them in every student checkpoint.
"""
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd.errors import InvalidConfig
from lskd_fairseq.loading import load_frozen_model
from lskd_fairseq.teacher_cache import Fingerprint, TeacherCache, TeacherCacheDataset


@dataclass
class TranslationKDConfig(TranslationConfig):
    teacher_path: Optional[str] = field(
        default=None, metadata={"help": "fairseq checkpoint of a live teacher (same dictionaries as the data)"}
    )
    teacher_cache: Optional[str] = field(
        default=None, metadata={"help": "folder written by lskd-dump-teacher; replaces --teacher-path"}
    )


@register_task("translation_kd", dataclass=TranslationKDConfig)
class TranslationKDTask(TranslationTask):
    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        if cfg.teacher_path and cfg.teacher_cache:
            raise InvalidConfig("give either --teacher-path or --teacher-cache, not both")
        if cfg.teacher_cache and cfg.left_pad_target:
            raise InvalidConfig("--teacher-cache aligns teacher rows with right-padded targets; drop --left-pad-target")
        self.teacher = None

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch, combine, **kwargs)
        if self.cfg.teacher_cache:
            dataset = self.datasets[split]
            data = Fingerprint.of_data(split, dataset, self.target_dictionary)
            cache = TeacherCache(self.cfg.teacher_cache, split, data)
            self.datasets[split] = TeacherCacheDataset(dataset, cache, self.target_dictionary.pad())

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if self.cfg.teacher_path and not from_checkpoint and self.teacher is None:
            self.teacher = load_frozen_model(self.cfg.teacher_path, self)
        return model

    def teacher_for(self, model) -> torch.nn.Module:
        """The live teacher on the student's device and in its floating-point dtype (fp16/bf16 runs)."""
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
