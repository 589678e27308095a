"""Per-epoch checkpoints that restore a run exactly: weights, optimizer, scheduler, scaler, RNG
states of every rank and the epoch history. Everything is plain tensors and Python values so the
file loads with ``torch.load(weights_only=True)``."""

import random
from pathlib import Path

import torch

from lskd_tools.checkpoints import load_checkpoint
from lskd_tools.files import atomic_file

LATEST = "checkpoint.pth"
BEST = "best.pth"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_atomic(payload: dict, path: Path) -> None:
    """A kill during saving never leaves a truncated checkpoint behind (``lskd_tools.files.atomic_file``)."""
    with atomic_file(path, "wb") as handle:
        torch.save(payload, handle)


def load(path: Path) -> dict:
    return load_checkpoint(path)
