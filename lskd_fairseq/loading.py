"""Loading data and frozen models (teachers, analysed checkpoints) the way every lskd command needs them."""

import os

import numpy as np
import torch
from fairseq import models
from fairseq.data import Dictionary, data_utils
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd.errors import DataError, InvalidConfig
from lskd_fairseq.checkpoints import read_fairseq_checkpoint, recorded_dictionaries

DICTIONARY_DIR_FLAG = "--teacher-dict-dir"


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


def _first_difference(expected: list, found: list) -> str:
    for index, (ours, theirs) in enumerate(zip(expected, found)):
        if ours != theirs:
            return f"first difference at index {index}: data has {ours!r}, checkpoint has {theirs!r}"
    return "one dictionary extends the other"


def _dictionaries_in(folder: str, src: str, tgt: str) -> dict | None:
    """Symbols of ``folder``'s ``dict.{src}.txt`` and ``dict.{tgt}.txt``; None when they are not both there."""
    paths = {side: os.path.join(folder, f"dict.{lang}.txt") for side, lang in (("source", src), ("target", tgt))}
    if not all(os.path.isfile(p) for p in paths.values()):
        return None
    return {side: Dictionary.load(p).symbols for side, p in paths.items()}


def checkpoint_dictionaries(path: str, state: dict, languages: tuple, dictionary_dir: str | None = None) -> dict:
    """The dictionaries a checkpoint was trained with: recorded in it by the plugin's criteria, else read from
    ``dictionary_dir``, else from its training data folder; refused when none of them holds them.
    ``languages`` (source, target) name the files where the checkpoint's config does not."""
    recorded = recorded_dictionaries(state)
    if recorded is not None:
        return recorded
    src = state["cfg"].task.get("source_lang") or languages[0]
    tgt = state["cfg"].task.get("target_lang") or languages[1]
    if dictionary_dir is not None:
        found = _dictionaries_in(dictionary_dir, src, tgt)
        if found is None:
            raise DataError(
                f"{DICTIONARY_DIR_FLAG} {dictionary_dir}: expected dict.{src}.txt and dict.{tgt}.txt "
                f"there (the dictionaries checkpoint {path} was trained with)"
            )
        return found
    data = str(state["cfg"].task.get("data") or "").split(os.pathsep)[0]
    found = _dictionaries_in(data, src, tgt) if data and os.path.isdir(data) else None
    if found is None:
        raise DataError(
            f"checkpoint {path}: its dictionaries cannot be checked: it does not record them (trained without the "
            f"lskd plugin's criteria) and its training data folder {data or '(none)'} is gone; pass "
            f"{DICTIONARY_DIR_FLAG} FOLDER holding the dict.*.txt files it was trained with"
        )
    return found


def check_dictionaries(path: str, state: dict, task, dictionary_dir: str | None = None) -> None:
    """Word-level KD and the analysis compare models token id by token id: refuse a checkpoint whose
    dictionaries differ from the data's, naming the first differing symbol and both sizes."""
    expected = {"source": task.source_dictionary, "target": task.target_dictionary}
    weights = state["model"]
    for ours, module in zip(expected.values(), ("encoder", "decoder")):
        key = f"{module}.embed_tokens.weight"
        if key in weights and weights[key].size(0) != len(ours):
            raise DataError(
                f"checkpoint {path}: its {module} vocabulary has {weights[key].size(0)} symbols, "
                f"the data's dictionary has {len(ours)}"
            )
    languages = (task.cfg.source_lang, task.cfg.target_lang)
    found = checkpoint_dictionaries(path, state, languages, dictionary_dir)
    for side, ours in expected.items():
        theirs = list(found[side])
        if list(ours.symbols) != theirs:
            raise DataError(
                f"checkpoint {path} was trained with another {side} dictionary than the data "
                f"({len(theirs)} vs {len(ours)} symbols; {_first_difference(ours.symbols, theirs)})"
            )


def disable_fast_path(model: torch.nn.Module) -> None:
    """Keep a frozen model on fairseq's regular layer code.

    fairseq 0.12.2 switches checkpoint-loaded encoder layers in eval mode to torch's fused
    BetterTransformer kernel, whose numerics differ from the path the model was trained and scored
    with (and which fails on some masks). Layers that have the switch get it turned off; fairseq-fixed
    has no such path, so nothing changes there.
    """
    for module in model.modules():
        if hasattr(module, "load_to_BT"):
            module.load_to_BT = False
        if hasattr(module, "BT_version"):
            module.BT_version = False


def load_frozen_model(path: str, task, dictionary_dir: str | None = None) -> torch.nn.Module:
    """The checkpoint's model built for ``task``'s dictionaries, frozen and in eval mode."""
    state = read_fairseq_checkpoint(path)
    check_dictionaries(path, state, task, dictionary_dir)
    model = models.build_model(state["cfg"].model, task, from_checkpoint=True)
    model.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
    disable_fast_path(model)
    model.eval()
    model.requires_grad_(False)
    return model
