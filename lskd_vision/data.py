"""The three datasets behind ``--dataset``: ImageNet (ImageFolder), CUB (release metadata) and the
embedded scikit-learn digits. Each returns train/val datasets and the number of classes.
torchvision is imported only for the image datasets, which keeps the digits runs quick to start."""
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from lskd.errors import InvalidConfig
from lskd_vision.cub import check_cub_folder, read_cub_split

DATASETS = ("imagenet", "cub", "digits")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_SPLIT_SEED = 0


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    num_classes: int
    class_names: list[str]  # indexed by label, for legends


class CubImages(Dataset):
    def __init__(self, root: Path, train: bool, transform):
        split = read_cub_split(root, train)
        self.paths, self.labels, self.num_classes = split.paths, split.labels, split.num_classes
        self.transform = transform

    def class_names(self) -> list[str]:
        """Each class's image folder name (e.g. ``029.American_Crow``), as the release names them."""
        names = {label: path.parent.name for path, label in zip(self.paths, self.labels)}
        return [names.get(label, str(label)) for label in range(self.num_classes)]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), self.labels[index]


def imagenet_transforms(crop: int, resize: int) -> tuple:
    from torchvision import transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = transforms.Compose(
        [transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]
    )
    return train, eval_transform(crop, resize)


def cub_transforms(crop: int, resize: int) -> tuple:
    """Paper §3.3 augmentations, used for both CUB teachers and students."""
    from torchvision import transforms

    train = transforms.Compose(
        [
            transforms.RandomResizedCrop(crop, scale=(0.2, 1.0), ratio=(0.8, 1.25)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(45, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.RandomGrayscale(0.2),
            transforms.ColorJitter(brightness=0.2, contrast=0.2),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return train, eval_transform(crop, resize)


def eval_transform(crop: int, resize: int):
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(crop),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def check_data(dataset: str, root: Path | None) -> None:
    """Cheap layout checks, so that a wrong --data fails before any output is written."""
    if dataset not in DATASETS:
        raise InvalidConfig(f"unknown --dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if dataset == "digits":
        if root is not None:
            raise InvalidConfig(f"--dataset digits is embedded (scikit-learn); expected no --data, got {root}")
        return
    if root is None:
        raise InvalidConfig(f"--dataset {dataset} needs --data DIR")
    if dataset == "cub":
        check_cub_folder(root)
        return
    for split in ("train", "val"):
        if not (Path(root) / split).is_dir():
            raise InvalidConfig(f"ImageNet folder {root} has no {split}/; expected {root}/{{train,val}}/<wnid>/*.JPEG")


def load_digits_split() -> tuple[TensorDataset, TensorDataset]:
    """scikit-learn's bundled 8×8 digits (1,797 images) with a fixed 1,437 / 360 split (every fifth
    image of each class, after a seeded shuffle, goes to validation), standardised with the training
    set's statistics."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    rank_in_class = torch.zeros(len(labels), dtype=torch.long)
    for digit in labels.unique():
        members = order[labels[order] == digit]
        rank_in_class[members] = torch.arange(len(members))
    is_val = rank_in_class % 5 == 4
    train_idx, val_idx = (~is_val).nonzero().squeeze(1), is_val.nonzero().squeeze(1)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return TensorDataset(images[train_idx], labels[train_idx]), TensorDataset(images[val_idx], labels[val_idx])


def load_data(dataset: str, root: Path | None, crop: int, resize: int, augment: bool = True) -> DataBundle:
    """``augment=False`` gives the training split the evaluation transform too, for reading features of
    the images themselves rather than of random crops."""
    check_data(dataset, root)
    if dataset == "digits":
        train, val = load_digits_split()
        return DataBundle(train, val, num_classes=10, class_names=[f"digit {d}" for d in range(10)])
    train_tf, val_tf = (cub_transforms if dataset == "cub" else imagenet_transforms)(crop, resize)
    if not augment:
        train_tf = val_tf
    if dataset == "cub":
        train = CubImages(root, True, train_tf)
        return DataBundle(train, CubImages(root, False, val_tf), train.num_classes, train.class_names())
    from torchvision import datasets

    train = datasets.ImageFolder(Path(root) / "train", train_tf)
    val = datasets.ImageFolder(Path(root) / "val", val_tf)
    if train.classes != val.classes:
        raise InvalidConfig(
            f"ImageNet train/ has {len(train.classes)} class folders and val/ has {len(val.classes)}; "
            "expected the same wnid folders in both (run data-prep/prepare-imagenet-val.sh)"
        )
    return DataBundle(train, val, num_classes=len(train.classes), class_names=list(train.classes))
