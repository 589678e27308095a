"""Move the flat ILSVRC2012 validation images into ``val/<wnid>/`` so torchvision's ImageFolder
reads them, using either Kaggle's ``LOC_val_solution.csv`` or the devkit's
``ILSVRC2012_validation_ground_truth.txt`` + ``map_clsloc.txt``. Driven by
``data-prep/prepare-imagenet-val.sh``. Every check runs before the first file moves."""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lskd.errors import DataError, InvalidConfig
from lskd_tools.cli import console_script, option, parse_config

IMAGE_SUFFIX = ".JPEG"


def labels_from_solution(csv_path: Path) -> dict[str, str]:
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or rows[0] != ["ImageId", "PredictionString"]:
        raise DataError(f"{csv_path} should start with the header 'ImageId,PredictionString'")
    labels = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[1].split():
            raise DataError(f"{csv_path}:{number}: expected 'ImageId,wnid x y x y ...', got {','.join(row)!r}")
        labels[row[0]] = row[1].split()[0]  # the first box's wnid is the image's class
    return labels


def labels_from_devkit(ground_truth: Path, mapping: Path) -> dict[str, str]:
    wnid_of_id = {}
    for line in mapping.read_text().splitlines():
        if line.strip():
            wnid, class_id, *_ = line.split()
            wnid_of_id[int(class_id)] = wnid
    labels = {}
    for number, line in enumerate(ground_truth.read_text().splitlines(), start=1):
        class_id = int(line)
        if class_id not in wnid_of_id:
            raise DataError(f"{ground_truth}:{number}: class id {class_id} is not in {mapping}")
        labels[f"ILSVRC2012_val_{number:08d}"] = wnid_of_id[class_id]
    return labels


def refolder(val_dir: Path, labels: dict[str, str], allow_partial: bool) -> str:
    if not val_dir.is_dir():
        raise DataError(f"{val_dir} does not exist; expected the folder of ILSVRC2012_val_*.JPEG images")
    flat = sorted(val_dir.glob(f"*{IMAGE_SUFFIX}"))
    unknown = [path.name for path in flat if path.stem not in labels]
    if unknown:
        raise DataError(f"{val_dir} holds {len(unknown)} images with no label, e.g. {unknown[0]}")
    placed = sum(1 for stem, wnid in labels.items() if (val_dir / wnid / f"{stem}{IMAGE_SUFFIX}").is_file())
    missing = len(labels) - placed - len(flat)
    if missing and not allow_partial:
        raise DataError(
            f"{val_dir} lacks {missing} of the {len(labels)} labelled images; expected all of them "
            "(pass --allow-partial for a subset)"
        )
    for path in flat:
        folder = val_dir / labels[path.stem]
        folder.mkdir(exist_ok=True)
        path.rename(folder / path.name)
    classes = sum(1 for child in val_dir.iterdir() if child.is_dir())
    return f"ImageNet val ready: {val_dir} (moved {len(flat)}, already in place {placed}, {classes} class folders)"


@dataclass
class PrepareImagenetConfig:
    val_dir: Path = option(positional=True, help="folder of the flat ILSVRC2012_val_*.JPEG images")
    solution: Optional[Path] = option(None, default_text="none", help="Kaggle LOC_val_solution.csv")
    ground_truth: Optional[Path] = option(
        None, default_text="none", help="devkit ILSVRC2012_validation_ground_truth.txt"
    )
    mapping: Optional[Path] = option(
        None, default_text="none", help="devkit map_clsloc.txt (WNID, ILSVRC2012_ID, name)"
    )
    allow_partial: bool = option(False, help="accept a subset of the 50,000 images")


@console_script("python -m lskd_vision.prepare_imagenet")
def main(argv=None) -> None:
    args = parse_config(PrepareImagenetConfig, argv, prog="python -m lskd_vision.prepare_imagenet", description=__doc__)
    for given in (args.solution, args.ground_truth, args.mapping):
        if given is not None and not given.is_file():
            raise DataError(f"{given} does not exist; expected a ground-truth file from ImageNet's release")
    if args.solution is not None and args.ground_truth is None:
        labels = labels_from_solution(args.solution)
    elif args.solution is None and args.ground_truth is not None and args.mapping is not None:
        labels = labels_from_devkit(args.ground_truth, args.mapping)
    else:
        raise InvalidConfig(
            "give either --solution LOC_val_solution.csv or --ground-truth GT.txt --mapping map_clsloc.txt"
        )
    print(refolder(args.val_dir, labels, args.allow_partial))


if __name__ == "__main__":
    main()
