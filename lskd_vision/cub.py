"""CUB-200-2011 read from its release metadata (``images.txt``, ``train_test_split.txt``,
``image_class_labels.txt``), the same split the paper used: 5,994 train / 5,794 test, labels 0-based."""

from dataclasses import dataclass
from pathlib import Path

from lskd.errors import DataError

METADATA_FILES = ("images.txt", "train_test_split.txt", "image_class_labels.txt")
ARCHIVE_NAME = "CUB_200_2011.tgz"
ARCHIVE_MD5 = "97eceeb196236b17998738112f37df78"


@dataclass(frozen=True)
class CubSplit:
    paths: list[Path]
    labels: list[int]
    num_classes: int


def _read_id_table(path: Path) -> dict[int, str]:
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}:{number}: expected '<image_id> <value>', got {line!r}")
        table[int(parts[0])] = parts[1].strip()
    return table


def check_cub_folder(root: Path) -> None:
    """Fail with the name of the first missing piece before anything is built or written."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CUB folder {root} does not exist; expected the extracted CUB_200_2011/ folder")
    for name in METADATA_FILES:
        if not (root / name).is_file():
            raise DataError(f"CUB folder {root} has no {name}; expected the release files {', '.join(METADATA_FILES)}")
    if not (root / "images").is_dir():
        raise DataError(f"CUB folder {root} has no images/ folder; expected images/<class>/<file>.jpg")


def read_cub_split(root: Path, train: bool, check_images: bool = True) -> CubSplit:
    root = Path(root)
    check_cub_folder(root)
    names = _read_id_table(root / "images.txt")
    is_train = _read_id_table(root / "train_test_split.txt")
    classes = _read_id_table(root / "image_class_labels.txt")
    if not names.keys() == is_train.keys() == classes.keys():
        raise DataError(f"CUB metadata in {root} lists different image ids in {', '.join(METADATA_FILES)}")
    num_classes = max(int(label) for label in classes.values())
    wanted = "1" if train else "0"
    ids = [image_id for image_id in sorted(names) if is_train[image_id] == wanted]
    paths = [root / "images" / names[image_id] for image_id in ids]
    if check_images:
        missing = [path for path in paths if not path.is_file()]
        if missing:
            raise DataError(f"CUB folder {root} lacks {len(missing)} listed images, e.g. {missing[0]}")
    return CubSplit(paths=paths, labels=[int(classes[image_id]) - 1 for image_id in ids], num_classes=num_classes)
