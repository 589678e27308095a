"""Helpers for the vision tests: CUB folders in the release layout, tiny generated images, the CLI runner."""

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from release_fixtures import write_cub_metadata
from repo_root import REPO
from script_runs import run_script


def tiny_jpeg(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)
    Image.new("RGB", (size, size), colour).save(path, "JPEG")


def cub_subset(dest: Path, classes: int = 2, images_per_class: int = 10) -> Path:
    """A CUB_200_2011/ folder: generated release metadata and a tiny image at every listed path."""
    root = dest / "CUB_200_2011"
    for image in write_cub_metadata(root, classes, images_per_class):
        tiny_jpeg(root / "images" / image.relative, image.image_id)
    return root


def environment(**extra: str) -> dict:
    return {**os.environ, "PYTHON": sys.executable, "PYTHONWARNINGS": "ignore", **extra}


def run(command: list, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment(**(env or {})))


def cli(*args: str) -> subprocess.CompletedProcess:
    """``lskd-vision ARGS`` (``script_runs``)."""
    return run_script("lskd-vision", *args, env=environment(), cwd=REPO)
