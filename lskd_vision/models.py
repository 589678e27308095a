"""Architectures by name (one ``ArchitectureSpec`` row each in ``ARCHITECTURES``), loading a state dict into
one, and the penultimate-layer hook point (reading checkpoint files is ``lskd_vision.checkpoint``'s).

torchvision models are always built with random weights: pretrained weights only ever come from a
file the user names, so nothing is downloaded behind their back.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lskd.errors import InvalidConfig


class DigitsCNN(nn.Module):
    """A small convnet for scikit-learn's 8×8 digits. GroupNorm rather than BatchNorm: it normalises
    each example on its own, so a multi-process run computes exactly what one process does with the
    same global batch, and high-temperature students still train stably."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()

        def block(in_channels: int, out_channels: int) -> list[nn.Module]:
            return [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.GroupNorm(4, out_channels),
                nn.ReLU(inplace=True),
            ]

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


@dataclass(frozen=True)
class ArchitectureSpec:
    """One ``--arch``: ``build(num_classes)`` gives a randomly initialised model; ``penultimate`` is the module
    whose output is the penultimate representation and ``classifier`` the final ``nn.Linear`` (attribute
    paths); ``model_class`` names the class that recognises a model built elsewhere (an official file's)."""

    name: str
    build: Callable[[int], nn.Module]
    penultimate: str
    classifier: str
    model_class: str


ARCHITECTURES: dict[str, ArchitectureSpec] = {
    spec.name: spec
    for spec in (
        ArchitectureSpec("resnet18", _torchvision("resnet18"), "avgpool", "fc", "ResNet"),
        ArchitectureSpec("resnet50", _torchvision("resnet50"), "avgpool", "fc", "ResNet"),
        ArchitectureSpec("mobilenet_v2", _torchvision("mobilenet_v2"), "classifier.0", "classifier.1", "MobileNetV2"),
        ArchitectureSpec(
            "efficientnet_b0", _torchvision("efficientnet_b0"), "classifier.0", "classifier.1", "EfficientNet"
        ),
        ArchitectureSpec("convnext_tiny", _torchvision("convnext_tiny"), "classifier.1", "classifier.2", "ConvNeXt"),
        ArchitectureSpec(
            "digits_cnn", lambda num_classes: DigitsCNN(num_classes, width=32), "avgpool", "fc", "DigitsCNN"
        ),
        ArchitectureSpec(
            "digits_cnn_small", lambda num_classes: DigitsCNN(num_classes, width=8), "avgpool", "fc", "DigitsCNN"
        ),
    )
}


def architecture(arch: str) -> ArchitectureSpec:
    if arch not in ARCHITECTURES:
        raise InvalidConfig(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_model(arch: str, num_classes: int) -> nn.Module:
    model = architecture(arch).build(num_classes)
    model.lskd_arch = arch
    return model


def _spec_of(model: nn.Module) -> ArchitectureSpec:
    """Models built here carry their arch name; others are recognised by class."""
    arch = getattr(model, "lskd_arch", None)
    if arch is not None:
        return ARCHITECTURES[arch]
    classes = {model_class.__name__ for model_class in type(model).__mro__}
    for spec in ARCHITECTURES.values():
        if spec.model_class in classes:
            return spec
    raise InvalidConfig(
        f"no penultimate hook point known for {type(model).__name__}; "
        f"expected one of {', '.join(sorted({spec.model_class for spec in ARCHITECTURES.values()}))}"
    )


def penultimate_and_classifier(model: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The module whose output is the penultimate representation and the final ``nn.Linear``.

    For ResNets and the digits CNN the hooked module is ``avgpool`` (ResNet output is [N, C, 1, 1]:
    flatten it); for MobileNetV2/EfficientNet it is the dropout before the classifier (identity in
    eval mode); for ConvNeXt the flatten before the last linear.
    """
    spec = _spec_of(model)
    return model.get_submodule(spec.penultimate), model.get_submodule(spec.classifier)


def classifier_path(arch: str) -> str:
    return architecture(arch).classifier


def num_classes_of(state_dict: dict, arch: str) -> int:
    return state_dict[classifier_path(arch) + ".weight"].shape[0]


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
