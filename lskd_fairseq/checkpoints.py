"""What the plugin reads from and adds to fairseq checkpoints.

- fairseq pickles its legacy ``argparse.Namespace`` config into every checkpoint; that class is the only
  non-tensor type a fairseq-fixed checkpoint needs. It is allow-listed (for fairseq's own loads too,
  under torch's ``weights_only=True`` default) instead of turning the safety check off.
- The plugin's criteria record the task's dictionaries in the task state fairseq saves with every
  checkpoint (``task_state``), so a teacher's dictionaries can be checked against the student's data
  from the checkpoint itself, wherever its training data has gone.
"""

import argparse
import functools
import pickle

import torch
from fairseq import checkpoint_utils
from omegaconf import OmegaConf

from lskd.errors import DataError
from lskd_tools.checkpoints import checkpoint_error, load_checkpoint

SAFE_CHECKPOINT_GLOBALS = [argparse.Namespace]
DICTIONARIES_KEY = "lskd_dictionaries"


def allow_fairseq_checkpoints() -> None:
    """Allow-list fairseq's checkpoint types process-wide, and make fairseq's own loader refuse anything else
    in lskd's words (``lskd_fairseq.install_process_hooks`` calls this)."""
    torch.serialization.add_safe_globals(SAFE_CHECKPOINT_GLOBALS)
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
    state = load_checkpoint(path, SAFE_CHECKPOINT_GLOBALS, what)
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
