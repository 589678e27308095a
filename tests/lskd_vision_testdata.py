"""Helpers for the vision tests: paths to the real metadata fixtures and tiny generated images."""
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data from the repository root
CUB_META = SHARED_DATA / "cub-200-2011"
IMAGENET_META = SHARED_DATA / "imagenet"
CUB_FILES = ("images.txt", "train_test_split.txt", "image_class_labels.txt")


def tiny_jpeg(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)
    Image.new("RGB", (size, size), colour).save(path, "JPEG")


def cub_subset(dest: Path, class_ids: set[int]) -> Path:
    """A CUB_200_2011/ folder holding the real metadata lines of ``class_ids`` and tiny images."""
    root = dest / "CUB_200_2011"
    root.mkdir(parents=True)
    labels = dict(line.split() for line in (CUB_META / "image_class_labels.txt").read_text().splitlines())
    keep = {image_id for image_id, label in labels.items() if int(label) in class_ids}
    for name in CUB_FILES:
        lines = [line for line in (CUB_META / name).read_text().splitlines() if line.split()[0] in keep]
        (root / name).write_text("\n".join(lines) + "\n")
    for line in (root / "images.txt").read_text().splitlines():
        image_id, relative = line.split()
        tiny_jpeg(root / "images" / relative, int(image_id))
    return root


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **kwargs.pop("env", {})}
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, **kwargs)


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "lskd_vision.cli", *args], **kwargs)
