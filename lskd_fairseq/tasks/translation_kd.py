"""Task ``translation_kd``: translation whose batches carry a teacher's outputs for ``word_kd``.

The teacher comes either live (``--teacher-path``: a frozen model run on every batch) or from an offline
top-k cache (``--teacher-cache``, written by ``lskd-dump-teacher``; no teacher model is loaded). A live
teacher lives on the task, not on the model or the criterion: fairseq's trainer would otherwise hand its
weights to the optimizer, wrap them in DDP and save them in every student checkpoint.

Everything a run's inputs can get wrong is checked while fairseq builds the task, the model and the
criterion and loads the data, before the first step, so a bad input never leaves a ``crash.pt``.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd.checks import check_topk
from lskd.errors import DataError, InvalidConfig
from lskd_fairseq.checkpoints import load_frozen_model
from lskd_fairseq.launch import check_data_parallel_launch
from lskd_fairseq.teacher_cache import Fingerprint, TeacherCache, TeacherCacheDataset, check_cache_serves


@dataclass
class TranslationKDConfig(TranslationConfig):
    teacher_path: Optional[str] = field(
        default=None, metadata={"help": "fairseq checkpoint of a live teacher (same dictionaries as the data)"}
    )
    teacher_cache: Optional[str] = field(
        default=None, metadata={"help": "folder written by lskd-dump-teacher; replaces --teacher-path"}
    )
    teacher_dict_dir: Optional[str] = field(
        default=None,
        metadata={
            "help": "folder holding the dict.*.txt a --teacher-path checkpoint was trained with, for "
            "teachers that do not record their dictionaries and whose data folder is gone"
        },
    )


@register_task("translation_kd", dataclass=TranslationKDConfig)
class TranslationKDTask(TranslationTask):
    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        if cfg.teacher_path and cfg.teacher_cache:
            raise InvalidConfig("give either --teacher-path or --teacher-cache, not both")
        if cfg.teacher_cache and cfg.left_pad_target:
            raise InvalidConfig("--teacher-cache aligns teacher rows with right-padded targets; drop --left-pad-target")
        if cfg.teacher_dict_dir and not cfg.teacher_path:
            raise InvalidConfig(
                "--teacher-dict-dir names a --teacher-path checkpoint's dictionaries; give --teacher-path too"
            )
        self.teacher = None
        self.caches: dict[str, TeacherCache] = {}
        self.cache_needs = None  # (standardize, tail temperature or None), set by the word_kd criterion

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        check_data_parallel_launch()
        return super().setup_task(cfg, **kwargs)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        if not (self.cfg.teacher_path or self.cfg.teacher_cache):  # fairseq-train loads data before any step
            raise InvalidConfig(
                "task translation_kd needs a teacher: give --teacher-path CHECKPOINT or "
                "--teacher-cache DIR (or use --task translation, which needs none)"
            )
        super().load_dataset(split, epoch, combine, **kwargs)
        if self.cfg.teacher_cache:
            dataset = self.datasets[split]
            cache = self.caches.get(split)
            if cache is None:
                data = Fingerprint.of_data(split, dataset, self.target_dictionary)
                cache = TeacherCache(self.cfg.teacher_cache, split, data, len(self.target_dictionary))
                self._check_same_teacher(cache)
                if self.cache_needs is not None:
                    check_cache_serves(cache.fingerprint, self.cfg.teacher_cache, *self.cache_needs)
                self.caches[split] = cache
            self.datasets[split] = TeacherCacheDataset(dataset, cache, self.target_dictionary.pad())

    def _check_same_teacher(self, cache: TeacherCache) -> None:
        """Training and validation (early stopping, checkpoint_best.pt) must follow the same teacher."""
        for other in self.caches.values():
            differences = other.fingerprint.teacher_differences(cache.fingerprint)
            if differences:
                raise DataError(
                    f"--teacher-cache {self.cfg.teacher_cache}: the '{other.fingerprint.subset}' and "
                    f"'{cache.fingerprint.subset}' caches differ in "
                    + "; ".join(differences)
                    + " — dump every subset from the same teacher with the same --topk and --dtype"
                )

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if self.cfg.teacher_path and not from_checkpoint and self.teacher is None:
            self.teacher = load_frozen_model(self.cfg.teacher_path, self, self.cfg.teacher_dict_dir)
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


def check_word_kd_task(task, kd_topk: int, transfer=None) -> None:
    """What criterion ``word_kd`` needs of its task, checked when fairseq builds it (before any step); a
    cache's statistics for the ``transfer`` (``lskd.divergences.Transfer``) are checked on every subset
    it loads, before or after this."""
    if not isinstance(task, TranslationKDTask):
        name = getattr(getattr(task, "cfg", None), "_name", type(task).__name__)
        raise InvalidConfig(
            f"criterion word_kd needs --task translation_kd with --teacher-path or --teacher-cache; "
            f"this run's task is {name}"
        )
    if kd_topk > 0 and task.cfg.teacher_cache:
        raise InvalidConfig(
            f"--kd-topk {kd_topk} cuts a live teacher (--teacher-path) to its top k; a --teacher-cache already holds "
            f"the top-k its dump kept: drop --kd-topk, or dump a cache with lskd-dump-teacher --topk {kd_topk}"
        )
    if kd_topk > 0:
        check_topk(kd_topk, len(task.target_dictionary), "--kd-topk")
    if transfer is None:
        return
    if transfer.tail and kd_topk == 0 and not task.cfg.teacher_cache:
        raise InvalidConfig(
            "--kd-topk-tail is the mass outside a top-k teacher's k tokens; give --kd-topk K with --teacher-path, "
            "or a --teacher-cache"
        )
    if task.cfg.teacher_cache:
        task.cache_needs = (transfer.standardize, transfer.teacher_t if transfer.tail else None)
        for cache in task.caches.values():
            check_cache_serves(cache.fingerprint, task.cfg.teacher_cache, *task.cache_needs)
