"""The vision front-end's checkpoints, all read through ``lskd_tools.checkpoints`` (weights only).

- Per-epoch checkpoints that restore a run exactly: weights, optimizer, scheduler, scaler, RNG states of
  every rank and the epoch history. Everything is plain tensors and Python values so the file loads with
  ``torch.load(weights_only=True)``.
- Trained weights given to a command (a teacher, ``--init``, the analysed models): ours, the official
  repo's, or a bare state dict, with the architecture they belong to.
"""

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lskd.errors import InvalidConfig
from lskd_tools.checkpoints import load_checkpoint
from lskd_tools.files import atomic_file
from lskd_vision.models import build_model, classifier_path, load_weights, num_classes_of

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


def _state_dict_of(payload, path: Path) -> dict:
    state = payload
    if isinstance(payload, dict):
        for key in ("state_dict", "model"):
            if isinstance(payload.get(key), dict):
                state = payload[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InvalidConfig(f"checkpoint {path} holds no state dict of tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def read_state_dict(path: Path) -> dict:
    """Weights from our checkpoints, the official repo's ``.pth.tar`` (``state_dict`` with DDP's
    ``module.`` prefixes) or a bare state dict, loaded with ``weights_only=True``."""
    return _state_dict_of(load_checkpoint(path), path)


@dataclass
class TrainedCheckpoint:
    """A checkpoint's weights with the architecture they belong to, read before any data is touched."""

    path: Path
    arch: str
    state: dict

    @property
    def num_classes(self) -> int:
        return num_classes_of(self.state, self.arch)


def read_checkpoint(path: Path, arch: str | None, arch_flag: str) -> TrainedCheckpoint:
    """Weights of ``path`` and their architecture: ``arch`` when given (the flag named ``arch_flag``
    wins, as for official files that record none), else the one our checkpoints record."""
    payload = load_checkpoint(path)
    state = _state_dict_of(payload, path)
    arch = arch or (payload.get("arch") if isinstance(payload, dict) else None)
    if arch is None:
        raise InvalidConfig(f"checkpoint {path} does not record its architecture; pass {arch_flag}")
    head = classifier_path(arch) + ".weight"
    if head not in state:
        raise InvalidConfig(f"checkpoint {path} has no {head}; expected a {arch} state dict")
    return TrainedCheckpoint(Path(path), arch, state)


def build_trained(checkpoint: TrainedCheckpoint, num_classes: int, dataset: str) -> nn.Module:
    """The checkpoint's model in eval mode, refused when its classifier predicts another number of
    classes than ``dataset`` has (its class indices would not be the dataset's labels)."""
    if checkpoint.num_classes != num_classes:
        raise InvalidConfig(
            f"checkpoint {checkpoint.path} predicts {checkpoint.num_classes} classes; expected {num_classes} "
            f"to match --dataset {dataset}"
        )
    model = build_model(checkpoint.arch, num_classes)
    load_weights(model, checkpoint.state, checkpoint.arch, checkpoint.path, keep_classifier=True)
    return model.eval()
