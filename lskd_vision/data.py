"""The datasets behind ``--dataset``, one ``DatasetSpec`` row each in ``DATASETS``: ImageNet (ImageFolder),
CUB (release metadata) and the embedded scikit-learn digits. A row says how the data is checked and
loaded, its transforms, its paper models and schedules, and its Fig. 1 classes; nothing else in the package
branches on a dataset's name. torchvision is imported only for the image datasets, which keeps the digits
runs quick to start."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from lskd.errors import InvalidConfig
from lskd_vision.cub import check_cub_folder, read_cub_split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_SPLIT_SEED = 0
# Image datasets: the crop the models see (random in training, central in evaluation), and the size
# evaluation resizes the short side to before its central crop.
CROP_SIZE, RESIZE_SIZE = 224, 256


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


def _check_imagenet_folder(root: Path) -> None:
    for split in ("train", "val"):
        if not (Path(root) / split).is_dir():
            raise InvalidConfig(f"ImageNet folder {root} has no {split}/; expected {root}/{{train,val}}/<wnid>/*.JPEG")


def _load_digits(root: Optional[Path], train_tf, val_tf) -> DataBundle:
    train, val = load_digits_split()
    return DataBundle(train, val, num_classes=10, class_names=[f"digit {d}" for d in range(10)])


def _load_cub(root: Path, train_tf, val_tf) -> DataBundle:
    train = CubImages(root, True, train_tf)
    return DataBundle(train, CubImages(root, False, val_tf), train.num_classes, train.class_names())


def _load_imagenet(root: Path, train_tf, val_tf) -> DataBundle:
    from torchvision import datasets

    train = datasets.ImageFolder(Path(root) / "train", train_tf)
    val = datasets.ImageFolder(Path(root) / "val", val_tf)
    if train.classes != val.classes:
        raise InvalidConfig(
            f"ImageNet train/ has {len(train.classes)} class folders and val/ has {len(val.classes)}; "
            "expected the same wnid folders in both (run data-prep/prepare-imagenet-val.sh)"
        )
    return DataBundle(train, val, num_classes=len(train.classes), class_names=list(train.classes))


def _paper_schedule(**values) -> dict:
    return {"batch_size": 256, "weight_decay": 1e-4, "warmup_epochs": 0, **values}


# The embedded digits: small enough that the whole alpha × T grid runs on a CPU in about a minute.
_DIGITS_SCHEDULE = {
    "epochs": 12,
    "lr": 0.1,
    "weight_decay": 5e-4,
    "lr_step": 8,
    "batch_size": 64,
    "amp": False,
    "channels_last": False,
    "threads": 1,
}


@dataclass(frozen=True)
class DatasetSpec:
    """One ``--dataset``. ``load(root, train_transform, val_transform)`` builds the splits (the data decides
    the class count); ``transforms(crop, resize)`` gives (train, evaluation) transforms, ``None`` for tensor
    data; ``presets`` are the role's schedules (preset ``NAME-ROLE``), ``archs`` its default models."""

    name: str
    load: Callable[[Optional[Path], object, object], DataBundle]
    data_help: str  # what --data must be, or "" for embedded data that takes no --data
    check_folder: Callable[[Path], None] = lambda root: None
    transforms: Optional[Callable[[int, int], tuple]] = None
    archs: Mapping[str, str] = field(default_factory=dict)  # role -> architecture
    presets: Mapping[str, dict] = field(default_factory=dict)  # role -> schedule
    fig1_classes: tuple[int, int, int] = (0, 1, 2)  # (target, semantically similar, dissimilar control)
    workers: int = 8  # data-loading processes by default


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "imagenet",
            _load_imagenet,
            "{train,val}/<wnid>/*.JPEG",
            _check_imagenet_folder,
            imagenet_transforms,
            archs={"teacher": "resnet50", "student": "resnet18"},
            presets={
                # Paper §3.1: torchvision ResNet-50 from scratch, PyTorch ImageNet example schedule.
                "teacher": _paper_schedule(epochs=90, lr=0.1, lr_step=30),
                # Paper §3.2: 200 epochs, ÷10 at 80 and 160, 5-epoch per-iteration warm-up.
                "student": _paper_schedule(epochs=200, lr=0.1, lr_step=80, warmup_epochs=5),
            },
            fig1_classes=(266, 267, 833),  # miniature poodle, standard poodle, submarine: the paper's Fig. 1
        ),
        DatasetSpec(
            "cub",
            _load_cub,
            "the extracted CUB_200_2011/ folder",
            check_cub_folder,
            cub_transforms,
            archs={"teacher": "resnet50", "student": "resnet18"},
            presets={
                # Paper §3.3: fine-tuned from the ImageNet teacher with the same alpha.
                "teacher": _paper_schedule(epochs=90, lr=0.01, lr_step=30, seed=2021),
                # Paper §3.4: ImageNet-pretrained students, weight decay 1e-3.
                "student": _paper_schedule(epochs=200, lr=0.01, lr_step=80, seed=2021, weight_decay=1e-3),
            },
            fig1_classes=(28, 29, 16),  # American crow, fish crow (told apart mostly by voice), cardinal
        ),
        DatasetSpec(
            "digits",
            _load_digits,
            "",
            archs={"teacher": "digits_cnn", "student": "digits_cnn_small"},
            # Students at half the teachers' rate: the T²-scaled KD gradient of a peaked (α = 0) teacher at T = 2-3
            # made lr 0.1 students stall near chance on some seeds (29 % top-1 for seed 2 at T = 2).
            presets={"teacher": _DIGITS_SCHEDULE, "student": {**_DIGITS_SCHEDULE, "lr": 0.05}},
            fig1_classes=(3, 9, 6),  # closest pair of mean training images, and the class farthest from both
            workers=0,
        ),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise InvalidConfig(f"unknown --dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def check_data(dataset: str, root: Path | None) -> None:
    """Cheap layout checks, so that a wrong --data fails before any output is written."""
    spec = dataset_spec(dataset)
    if not spec.data_help:
        if root is not None:
            raise InvalidConfig(f"--dataset {dataset} is embedded; expected no --data, got {root}")
        return
    if root is None:
        raise InvalidConfig(f"--dataset {dataset} needs --data DIR ({spec.data_help})")
    spec.check_folder(root)


def load_data(dataset: str, root: Path | None, crop: int, resize: int, augment: bool = True) -> DataBundle:
    """``augment=False`` gives the training split the evaluation transform too, for reading features of
    the images themselves rather than of random crops."""
    check_data(dataset, root)
    spec = DATASETS[dataset]
    train_tf, val_tf = spec.transforms(crop, resize) if spec.transforms is not None else (None, None)
    return spec.load(root, train_tf if augment else val_tf, val_tf)
