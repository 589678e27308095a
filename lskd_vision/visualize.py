"""``lskd-vision visualize``: the paper's Fig. 1 and the diffusion measures for image classifiers.

Everything that can fail on the user's input (names, checkpoints, data, classes, class counts) is
checked before the first forward pass, and nothing is written until the analysis has every number.
The projection, measures and figure are ``lskd_report.diffusion_report.analyse_models``'s. Penultimate-layer
features are read with a forward hook, so the model's own forward pass (and nothing re-implemented here)
decides what the penultimate representation is.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from lskd.diffusion import check_classes, select_classes
from lskd.errors import InvalidConfig
from lskd_report.diffusion_report import AnalysisOutputs, ModelFeatures, analyse_models, parse_checkpoints
from lskd_vision.checkpoint import build_trained, read_checkpoint
from lskd_vision.data import CROP_SIZE, RESIZE_SIZE, dataset_spec, load_data
from lskd_vision.engine import wants_cuda
from lskd_vision.models import penultimate_and_classifier


@dataclass
class VisualizeConfig:
    checkpoints: Sequence[str]  # NAME=CKPT, figure rows in this order
    dataset: str
    out: Path
    data: Optional[Path] = None
    classes: Optional[Sequence[int]] = None  # default: the dataset's Fig. 1 classes
    arch: Optional[Sequence[str]] = None  # one for every checkpoint, or one per checkpoint
    max_train_per_class: int = 150  # the authors' first 150 training and 50 validation images
    max_valid_per_class: int = 50
    batch_size: int = 128
    device: str = "auto"
    workers: Optional[int] = None  # default: the dataset's
    crop_size: int = CROP_SIZE
    resize_size: int = RESIZE_SIZE


def _check_numbers(config: VisualizeConfig) -> None:
    for flag, value, minimum in (
        ("--max-train-per-class", config.max_train_per_class, 2),
        ("--max-valid-per-class", config.max_valid_per_class, 2),
        ("--batch-size", config.batch_size, 1),
        ("--workers", config.workers, 0),
        ("--crop-size", config.crop_size, 1),
        ("--resize-size", config.resize_size, 1),
    ):
        if value is not None and value < minimum:
            raise InvalidConfig(f"{flag} must be at least {minimum}, got {value}")
    if config.out.exists() and not config.out.is_dir():
        raise InvalidConfig(f"--out {config.out} is a file; expected a folder")


def _archs(config: VisualizeConfig, count: int) -> list[Optional[str]]:
    """``--arch`` given once applies to every checkpoint; otherwise it must name one per checkpoint."""
    if not config.arch:
        return [None] * count
    if len(config.arch) == 1:
        return list(config.arch) * count
    if len(config.arch) != count:
        raise InvalidConfig(
            f"--arch names {len(config.arch)} architectures for {count} checkpoints; "
            "expected one for all or one per checkpoint"
        )
    return list(config.arch)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Every sample's label without loading a single image: ImageFolder's ``targets``, CUB's ``labels``,
    the digits TensorDataset's second tensor."""
    for attribute in ("targets", "labels"):
        if hasattr(dataset, attribute):
            return np.asarray(getattr(dataset, attribute), dtype=np.int64)
    return dataset.tensors[1].numpy().astype(np.int64)


def class_rows(dataset: Dataset, classes: Sequence[int], split: str, max_per_class: Optional[int]) -> np.ndarray:
    """Dataset indices of the first ``max_per_class`` samples of each class, in dataset order.

    The indices go through the analysis's own selection (as a one-column feature), so extraction picks
    exactly the rows the analysis would keep, with its checks (at least 2 samples per class)."""
    labels = dataset_labels(dataset)
    indices = np.arange(len(labels), dtype=np.float64)[:, None]
    chosen, _ = select_classes(indices, labels, classes, split, max_per_class)
    return chosen[:, 0].astype(np.int64)


@torch.no_grad()
def penultimate_features(
    model: nn.Module,
    dataset: Dataset,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    workers: int,
    description: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) in float32 on the CPU, labels (N,)) of ``dataset[rows]``, in eval mode.

    The labels are the dataset's, which are the classifier's indices once the class counts agree."""
    hooked, _ = penultimate_and_classifier(model)
    captured: list[torch.Tensor] = []

    def keep_output(module: nn.Module, inputs, output: torch.Tensor) -> None:
        captured.append(output.flatten(1).float().cpu())

    handle = hooked.register_forward_hook(keep_output)
    model.eval().to(device)
    loader = DataLoader(Subset(dataset, rows.tolist()), batch_size=batch_size, shuffle=False, num_workers=workers)
    labels = []
    try:
        for images, target in tqdm(loader, desc=description, unit="batch", leave=False):
            model(images.to(device))
            labels.append(target)
    finally:
        handle.remove()
    return torch.cat(captured), torch.cat(labels).long()


def visualize(config: VisualizeConfig) -> AnalysisOutputs:
    _check_numbers(config)
    device = torch.device("cuda" if wants_cuda(config.device) else "cpu")
    named = parse_checkpoints(config.checkpoints)
    checkpoints = {
        name: read_checkpoint(Path(path), arch, "--arch")
        for (name, path), arch in zip(named.items(), _archs(config, len(named)))
    }
    spec = dataset_spec(config.dataset)
    data = load_data(config.dataset, config.data, config.crop_size, config.resize_size, augment=False)
    classes = check_classes(config.classes or spec.fig1_classes, data.num_classes)
    models = {
        name: build_trained(checkpoint, data.num_classes, config.dataset) for name, checkpoint in checkpoints.items()
    }
    splits = {"train": (data.train, config.max_train_per_class), "valid": (data.val, config.max_valid_per_class)}
    rows = {split: class_rows(dataset, classes, split, cap) for split, (dataset, cap) in splits.items()}
    workers = spec.workers if config.workers is None else config.workers
    extracted = {}
    for name, model in models.items():
        features = {
            split: penultimate_features(
                model, dataset, rows[split], config.batch_size, device, workers, f"{name}: {split}"
            )
            for split, (dataset, _) in splits.items()
        }
        _, classifier = penultimate_and_classifier(model)
        bias = None if classifier.bias is None else classifier.bias.detach().cpu()
        extracted[name] = ModelFeatures(*features["train"], *features["valid"], classifier.weight.detach().cpu(), bias)
    inputs = {
        "dataset": config.dataset,
        "data": str(config.data) if config.data else None,
        "checkpoints": {name: {"path": str(c.path), "arch": c.arch} for name, c in checkpoints.items()},
        "max_train_per_class": config.max_train_per_class,
        "max_valid_per_class": config.max_valid_per_class,
        "transform": "evaluation transform on both splits (no augmentation)",
    }
    return analyse_models(
        extracted, classes, config.out, class_names=[data.class_names[c] for c in classes], inputs=inputs
    )
