"""What the plugin reads from and adds to fairseq checkpoints, and frozen models (teachers, analysed checkpoints)
built from them the way every lskd command needs them.

- fairseq pickles its legacy ``argparse.Namespace`` config into every checkpoint; that class is the only
  non-tensor type a fairseq-fixed checkpoint needs (``lskd_tools.checkpoints.FAIRSEQ_SAFE_GLOBALS``). It is
  allow-listed (for fairseq's own loads too, under torch's ``weights_only=True`` default) instead of turning
  the safety check off.
- The plugin's criteria record the task's dictionaries in the task state fairseq saves with every
  checkpoint (``task_state``), so a teacher's dictionaries can be checked against the student's data
  from the checkpoint itself, wherever its training data has gone.
"""

import functools
import os
import pickle

import torch
from fairseq import checkpoint_utils, models
from fairseq.data import Dictionary
from omegaconf import OmegaConf

from lskd.errors import DataError
from lskd_tools.checkpoints import FAIRSEQ_SAFE_GLOBALS, checkpoint_error, load_checkpoint

DICTIONARIES_KEY = "lskd_dictionaries"
DICTIONARY_DIR_FLAG = "--teacher-dict-dir"


def allow_fairseq_checkpoints() -> None:
    """Allow-list fairseq's checkpoint types process-wide, and make fairseq's own loader refuse anything else
    in lskd's words (``lskd_fairseq.install_process_hooks`` calls this)."""
    torch.serialization.add_safe_globals(FAIRSEQ_SAFE_GLOBALS)
    if not getattr(checkpoint_utils.load_checkpoint_to_cpu, "lskd_refusals", False):
        checkpoint_utils.load_checkpoint_to_cpu = _with_lskd_refusals(checkpoint_utils.load_checkpoint_to_cpu)


def _with_lskd_refusals(load):
    """fairseq's loader (``fairseq-generate --path``, ``fairseq-train --restore-file``) calls ``torch.load``
    itself: a refused unsafe file would end in torch's traceback, whose last advice is to retry with the
    weights-only check turned off. Its refusal becomes lskd's one-line ``DataError`` (printed by ``cli_errors``)."""

    @functools.wraps(load)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return load(path, *args, **kwargs)
        except pickle.UnpicklingError as error:
            raise checkpoint_error(path, error) from None

    load_checkpoint_to_cpu.lskd_refusals = True
    return load_checkpoint_to_cpu


def record_dictionaries(task) -> None:
    """Put the symbols of ``task``'s dictionaries into the state fairseq saves in each checkpoint."""
    sides = {"source": getattr(task, "source_dictionary", None), "target": getattr(task, "target_dictionary", None)}
    if all(dictionary is not None for dictionary in sides.values()):
        task.state.merge_state_dict({DICTIONARIES_KEY: {side: list(d.symbols) for side, d in sides.items()}})


def recorded_dictionaries(state: dict) -> dict | None:
    """``{"source": [...], "target": [...]}`` symbols a checkpoint recorded, None for one that did not."""
    return (state.get("task_state") or {}).get(DICTIONARIES_KEY)


def read_fairseq_checkpoint(path, what: str = "checkpoint") -> dict:
    """A fairseq-train checkpoint's state as fairseq's own loader returns it (config as OmegaConf, legacy
    fields upgraded), loaded weights-only; a file fairseq-train did not write is refused by name."""
    state = load_checkpoint(path, FAIRSEQ_SAFE_GLOBALS, what)
    fairseq_like = isinstance(state, dict) and isinstance(state.get("model"), dict)
    if not fairseq_like or (state.get("cfg") is None and state.get("args") is None):
        if isinstance(state, dict):
            found = f"the keys {', '.join(sorted(map(str, state))[:6])}" if state else "an empty dict"
        else:
            found = f"a {type(state).__name__}"
        raise DataError(
            f"{what} {path} is not a fairseq checkpoint: it holds {found}; expected the "
            f"'model' and 'cfg' entries fairseq-train writes"
        )
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
    # a checkpoint stripped to its weights and config (e.g. for release) lacks the training history
    state.setdefault("optimizer_history", [{"optimizer_name": None, "lr_scheduler_state": {}, "num_updates": 0}])
    state.setdefault("extra_state", {})
    return checkpoint_utils._upgrade_state_dict(state)


def first_difference(expected: list, found: list) -> str:
    for index, (ours, theirs) in enumerate(zip(expected, found)):
        if ours != theirs:
            return f"first difference at index {index}: data has {ours!r}, checkpoint has {theirs!r}"
    return "one dictionary extends the other"


def dictionaries_in(folder: str, src: str, tgt: str) -> dict | None:
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
        found = dictionaries_in(dictionary_dir, src, tgt)
        if found is None:
            raise DataError(
                f"{DICTIONARY_DIR_FLAG} {dictionary_dir}: expected dict.{src}.txt and dict.{tgt}.txt "
                f"there (the dictionaries checkpoint {path} was trained with)"
            )
        return found
    data = str(state["cfg"].task.get("data") or "").split(os.pathsep)[0]
    found = dictionaries_in(data, src, tgt) if data and os.path.isdir(data) else None
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
                f"({len(theirs)} vs {len(ours)} symbols; {first_difference(ours.symbols, theirs)})"
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
