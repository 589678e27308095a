"""Load a frozen fairseq translation teacher that is safe to run next to a student being trained."""
import logging
import os

import torch
from fairseq import checkpoint_utils, models
from fairseq.data import Dictionary, data_utils

from lskd import InvalidConfig

logger = logging.getLogger(__name__)


def _first_difference(expected: Dictionary, found: Dictionary) -> str:
    for index, (ours, theirs) in enumerate(zip(expected.symbols, found.symbols)):
        if ours != theirs:
            return f"first difference at index {index}: data has {ours!r}, teacher has {theirs!r}"
    return "one dictionary extends the other"


def _teacher_dictionaries(cfg):
    """The teacher's own dictionaries, read from the data folder it was trained on (None if gone)."""
    task_cfg = cfg.task
    data = str(task_cfg.data).split(os.pathsep)[0]
    if not os.path.isdir(data):
        return None
    src, tgt = task_cfg.source_lang, task_cfg.target_lang
    if src is None or tgt is None:
        src, tgt = data_utils.infer_language_pair(data)
    paths = [os.path.join(data, f"dict.{lang}.txt") for lang in (src, tgt)]
    if not all(os.path.isfile(p) for p in paths):
        return None
    return [Dictionary.load(p) for p in paths]


def check_dictionaries(path: str, state: dict, task) -> None:
    """Word-level KD compares the two models token id by token id: refuse a teacher whose dictionaries
    differ from the data's, naming the first differing symbol and both sizes."""
    expected = [("source", task.source_dictionary), ("target", task.target_dictionary)]
    found = _teacher_dictionaries(state["cfg"])
    if found is not None:
        for (side, ours), theirs in zip(expected, found):
            if ours.symbols != theirs.symbols:
                raise InvalidConfig(
                    f"teacher {path} has another {side} dictionary than the data "
                    f"({len(theirs)} vs {len(ours)} symbols; {_first_difference(ours, theirs)})"
                )
        return
    weights = state["model"]
    for (side, ours), key in zip(expected, ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")):
        if key in weights and weights[key].size(0) != len(ours):
            raise InvalidConfig(
                f"teacher {path} has a {side} vocabulary of {weights[key].size(0)} symbols, "
                f"the data's dictionary has {len(ours)}"
            )
    logger.warning(
        "teacher %s: its training data folder is gone, so only the dictionary sizes could be checked; "
        "make sure it was trained on the same dictionaries",
        path,
    )


def disable_fast_path(model: torch.nn.Module) -> None:
    """Keep the teacher on fairseq's regular layer code.

    fairseq 0.12.2 switches checkpoint-loaded encoder layers in eval mode to torch's fused
    BetterTransformer kernel, whose numerics differ from the path the teacher was trained and scored
    with (and which fails on some masks). Layers that have the switch get it turned off; fairseq-fixed
    has no such path, so nothing changes there.
    """
    for module in model.modules():
        if hasattr(module, "load_to_BT"):
            module.load_to_BT = False
        if hasattr(module, "BT_version"):
            module.BT_version = False


def load_teacher(path: str, task) -> torch.nn.Module:
    """Build the checkpoint's model for ``task``'s dictionaries, frozen and in eval mode."""
    if not os.path.isfile(path):
        raise InvalidConfig(f"--teacher-path {path}: no such checkpoint file")
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    check_dictionaries(path, state, task)
    teacher = models.build_model(state["cfg"].model, task, from_checkpoint=True)
    teacher.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
    disable_fast_path(teacher)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher
