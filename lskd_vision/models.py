"""Architectures by name, checkpoint loading and the penultimate-layer hook point.

torchvision models are always built with random weights: pretrained weights only ever come from a
file the user names, so nothing is downloaded behind their back.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lskd.errors import InvalidConfig
from lskd_tools.checkpoints import load_checkpoint


class DigitsCNN(nn.Module):
    """A small convnet for scikit-learn's 8×8 digits. GroupNorm rather than BatchNorm: it normalises
    each example on its own, so a multi-process run computes exactly what one process does with the
    same global batch, and high-temperature students still train stably."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()

        def block(in_channels: int, out_channels: int) -> list[nn.Module]:
            return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.GroupNorm(4, out_channels), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, width), *block(width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 2 * width)
        )
        self.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.features(x)))


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(num_classes: int) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)

    return build


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
    "mobilenet_v2": _torchvision("mobilenet_v2"),
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    "convnext_tiny": _torchvision("convnext_tiny"),
    "digits_cnn": lambda num_classes: DigitsCNN(num_classes, width=32),
    "digits_cnn_small": lambda num_classes: DigitsCNN(num_classes, width=8),
}

# (module whose output is the penultimate feature, the final linear layer), as attribute paths.
_HOOK_POINTS = {
    "resnet18": ("avgpool", "fc"),
    "resnet50": ("avgpool", "fc"),
    "digits_cnn": ("avgpool", "fc"),
    "digits_cnn_small": ("avgpool", "fc"),
    "mobilenet_v2": ("classifier.0", "classifier.1"),
    "efficientnet_b0": ("classifier.0", "classifier.1"),
    "convnext_tiny": ("classifier.1", "classifier.2"),
}


def build_model(arch: str, num_classes: int) -> nn.Module:
    check_arch(arch)
    model = ARCHITECTURES[arch](num_classes)
    model.lskd_arch = arch
    return model


def check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise InvalidConfig(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")


def _hook_paths(model: nn.Module) -> tuple[str, str]:
    """Models built here carry their arch name; others are recognised by class."""
    arch = getattr(model, "lskd_arch", None)
    if arch is not None:
        return _HOOK_POINTS[arch]
    import torchvision

    by_class = (
        (DigitsCNN, _HOOK_POINTS["digits_cnn"]),
        (torchvision.models.ResNet, _HOOK_POINTS["resnet18"]),
        (torchvision.models.MobileNetV2, _HOOK_POINTS["mobilenet_v2"]),
        (torchvision.models.EfficientNet, _HOOK_POINTS["efficientnet_b0"]),
        (torchvision.models.ConvNeXt, _HOOK_POINTS["convnext_tiny"]),
    )
    for model_class, paths in by_class:
        if isinstance(model, model_class):
            return paths
    raise InvalidConfig(f"no penultimate hook point known for {type(model).__name__}")


def penultimate_and_classifier(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The module whose output is the penultimate representation and the final ``nn.Linear``.

    For ResNets and the digits CNN the hooked module is ``avgpool`` (ResNet output is [N, C, 1, 1]:
    flatten it); for MobileNetV2/EfficientNet it is the dropout before the classifier (identity in
    eval mode); for ConvNeXt the flatten before the last linear.
    """
    hook_path, linear_path = _hook_paths(model)
    return model.get_submodule(hook_path), model.get_submodule(linear_path)


def classifier_path(arch: str) -> str:
    return _HOOK_POINTS[arch][1]


def num_classes_of(state_dict: dict, arch: str) -> int:
    return state_dict[classifier_path(arch) + ".weight"].shape[0]


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
    check_arch(arch)
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


def load_weights(model: nn.Module, state: dict, arch: str, path: Path, keep_classifier: bool) -> None:
    """Load ``state`` strictly; with ``keep_classifier=False`` the checkpoint's head is dropped and the
    model keeps its freshly initialised one (fine-tuning onto a dataset with other classes)."""
    if not keep_classifier:
        head = classifier_path(arch) + "."
        state = {k: v for k, v in state.items() if not k.startswith(head)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches, e.g. a resnet50 file given for resnet18
        detail = str(error).strip().splitlines()[-1].strip()
        raise InvalidConfig(f"checkpoint {path} does not fit --arch {arch}: {detail}") from error
    if not keep_classifier:
        missing = [k for k in missing if not k.startswith(classifier_path(arch) + ".")]
    if missing or unexpected:
        raise InvalidConfig(
            f"checkpoint {path} does not fit --arch {arch}: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
