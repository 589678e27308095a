"""Loading data and frozen models (teachers, analysed checkpoints) the way every lskd command needs them."""
import logging
import os

import torch
from fairseq import checkpoint_utils, models
from fairseq.data import Dictionary, data_utils
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from lskd.errors import InvalidConfig

logger = logging.getLogger(__name__)


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
    cfg = TranslationConfig(data=data_bin, source_lang=source_lang, target_lang=target_lang,
                            train_subset=train_subset, dataset_impl=None, required_seq_len_multiple=1)
    return TranslationTask.setup_task(cfg)


def load_subset(task: TranslationTask, subset: str):
    try:
        task.load_dataset(subset)
    except FileNotFoundError as error:
        raise InvalidConfig(f"subset {subset!r} not found in {task.cfg.data} ({error})") from None
    return task.dataset(subset)


def _first_difference(expected: Dictionary, found: Dictionary) -> str:
    for index, (ours, theirs) in enumerate(zip(expected.symbols, found.symbols)):
        if ours != theirs:
            return f"first difference at index {index}: data has {ours!r}, checkpoint has {theirs!r}"
    return "one dictionary extends the other"


def _training_dictionaries(cfg):
    """The checkpoint's own dictionaries, read from the data folder it was trained on (None if gone)."""
    data = str(cfg.task.data).split(os.pathsep)[0]
    if not os.path.isdir(data):
        return None
    src, tgt = cfg.task.source_lang, cfg.task.target_lang
    if src is None or tgt is None:
        src, tgt = data_utils.infer_language_pair(data)
    paths = [os.path.join(data, f"dict.{lang}.txt") for lang in (src, tgt)]
    if not all(os.path.isfile(p) for p in paths):
        return None
    return [Dictionary.load(p) for p in paths]


def check_dictionaries(path: str, state: dict, task) -> None:
    """Word-level KD and the analysis compare models token id by token id: refuse a checkpoint whose
    dictionaries differ from the data's, naming the first differing symbol and both sizes."""
    expected = [("source", task.source_dictionary), ("target", task.target_dictionary)]
    weights = state["model"]
    for (side, ours), module in zip(expected, ("encoder", "decoder")):
        key = f"{module}.embed_tokens.weight"
        if key in weights and weights[key].size(0) != len(ours):
            raise InvalidConfig(f"checkpoint {path}: its {module} vocabulary has {weights[key].size(0)} symbols, "
                                f"the data's dictionary has {len(ours)}")
    found = _training_dictionaries(state["cfg"])
    if found is None:
        logger.warning("checkpoint %s: its training data folder is gone, so only the dictionary sizes could be "
                       "checked; make sure it was trained on the same dictionaries", path)
        return
    for (side, ours), theirs in zip(expected, found):
        if ours.symbols != theirs.symbols:
            raise InvalidConfig(
                f"checkpoint {path} was trained with another {side} dictionary than the data "
                f"({len(theirs)} vs {len(ours)} symbols; {_first_difference(ours, theirs)})"
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


def load_frozen_model(path: str, task) -> torch.nn.Module:
    """The checkpoint's model built for ``task``'s dictionaries, frozen and in eval mode."""
    if not os.path.isfile(path):
        raise InvalidConfig(f"checkpoint {path}: no such file")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as error:  # a truncated or foreign file fails deep inside torch.load
        raise InvalidConfig(f"checkpoint {path} could not be read ({type(error).__name__}: {error})") from None
    check_dictionaries(path, state, task)
    model = models.build_model(state["cfg"].model, task, from_checkpoint=True)
    model.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
    disable_fast_path(model)
    model.eval()
    model.requires_grad_(False)
    return model
