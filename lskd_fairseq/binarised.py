"""What fairseq-preprocess wrote, read through fairseq's own dataset classes (for lskd's commands and data tools)."""

import os

import numpy as np
from fairseq.data import data_utils
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd.errors import InvalidConfig


def translation_task(data_bin: str, source_lang: str, target_lang: str, train_subset: str = "train") -> TranslationTask:
    """A plain translation task over ``data_bin``, whatever task a checkpoint was trained with.

    The fields fairseq fills from its global config (``${dataset...}``) are set here: the binary format is
    inferred from the files, and sequences are not padded to a multiple.
    """
    if not os.path.isdir(data_bin):
        raise InvalidConfig(f"data folder {data_bin}: not found; expected a fairseq-preprocess output folder")
    if source_lang is None or target_lang is None:
        source_lang, target_lang = data_utils.infer_language_pair(data_bin)
    for lang in (source_lang, target_lang):
        path = os.path.join(data_bin, f"dict.{lang}.txt")
        if not os.path.isfile(path):
            raise InvalidConfig(f"no dictionary {path}; expected a fairseq-preprocess folder for {lang}")
    cfg = TranslationConfig(
        data=data_bin,
        source_lang=source_lang,
        target_lang=target_lang,
        train_subset=train_subset,
        dataset_impl=None,
        required_seq_len_multiple=1,
    )
    return TranslationTask.setup_task(cfg)


def load_subset(task: TranslationTask, subset: str):
    try:
        task.load_dataset(subset)
    except FileNotFoundError as error:
        raise InvalidConfig(f"subset {subset!r} not found in {task.cfg.data} ({error})") from None
    return task.dataset(subset)


def too_long_sentences(dataset, max_positions) -> list[int]:
    """Ids of the pairs longer than a model's (source, target) positions: what fairseq-generate's
    ``--skip-invalid-size-inputs-valid-test`` skips, in the same way (the dataset's own size filter)."""
    _, ignored = dataset.filter_indices_by_size(np.arange(len(dataset), dtype=np.int64), max_positions)
    return sorted(int(index) for index in ignored)


def sentence_count(data_bin, subset: str, source_lang: str, target_lang: str) -> int:
    """Sentences of ``subset`` as fairseq's translation task loads them (either pair name serves)."""
    return len(load_subset(translation_task(str(data_bin), source_lang, target_lang), subset))
