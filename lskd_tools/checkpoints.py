"""The one way every lskd command reads a checkpoint file: ``torch.load`` with ``weights_only=True``.

Only tensors, plain Python values and the types a front-end allow-lists (fairseq's ``argparse.Namespace``)
are unpickled; anything else is refused as unsafe, never retried with the check turned off. Every failure
is one ``DataError`` naming the file and what is wrong with it.
"""

import argparse
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from lskd.errors import DataError

_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_REFUSED_OPERAND = re.compile(r"Unsupported operand \d+")
# The config fairseq-train pickles into every checkpoint: allow-listed only where fairseq checkpoints are read
# (lskd_fairseq), and named in the refusal everywhere else.
FAIRSEQ_SAFE_GLOBALS = [argparse.Namespace]
FAIRSEQ_CONFIG = "argparse.Namespace"


def _first_sentence(error: Exception) -> str:
    text = str(error).strip()
    sentence = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(error).__name__}: {sentence}" if sentence else type(error).__name__


def _refused_content(message: str) -> str:
    if found := _REFUSED_GLOBAL.search(message):
        return f"it pickles {found.group(1)}"
    if found := _REFUSED_OPERAND.search(message):
        return f"its pickle uses an instruction outside the safe set ({found.group(0)})"
    return "it holds objects outside the safe set"


def check_checkpoint_file(path, what: str = "checkpoint") -> Path:
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".tar"))
        hint = f" (it holds {', '.join(inside[:4])})" if inside else ""
        raise DataError(f"{what} {path} is a directory; expected a checkpoint file{hint}")
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist; expected a checkpoint file")
    return path


def load_checkpoint(path, allowed: Iterable[type] = (), what: str = "checkpoint"):
    """The unpickled contents of ``path`` on CPU, with ``allowed`` classes added to torch's safe set."""
    path = check_checkpoint_file(path, what)
    # leaving safe_globals() removes what it added, so only add what is not allowed process-wide already
    extra = [cls for cls in allowed if cls not in torch.serialization.get_safe_globals()]
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(extra):
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # legacy files; refused below
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  torch.load fails with many types; each means "not a safe, whole checkpoint"
        raise checkpoint_error(path, error, what) from None


def checkpoint_error(path, error: Exception, what: str = "checkpoint") -> DataError:
    """The one-line ``DataError`` for a ``torch.load`` of ``path`` that failed with ``error``."""
    message = str(error)
    if "Weights only load failed" not in message:
        return DataError(
            f"{what} {path} could not be read: truncated or not a PyTorch checkpoint ({_first_sentence(error)})"
        )
    refused = _REFUSED_GLOBAL.search(message)
    if refused and refused.group(1) == FAIRSEQ_CONFIG:
        return DataError(
            f"{what} {path} is a fairseq checkpoint (it pickles {FAIRSEQ_CONFIG}, the config fairseq-train "
            f"stores), not one this command reads"
        )
    return DataError(
        f"{what} {path} was refused as unsafe: {_refused_content(message)}, which a weights-only load "
        f"(weights_only=True) does not allow; lskd loads only tensors and plain values"
    )
