"""Penultimate-layer features of a few classes, read with a forward hook so the model's own forward pass
(and nothing re-implemented here) decides what the penultimate representation is."""

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from lskd.analysis import select_classes
from lskd_vision.models import penultimate_and_classifier


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
