"""Put CUB-200-2011 in place and check it: from a given folder, a given ``CUB_200_2011.tgz``, or a
download. Driven by ``data-prep/prepare-cub.sh``."""

import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lskd.errors import DataError
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import atomic_file, file_digest
from lskd_vision.cub import ARCHIVE_MD5, ARCHIVE_NAME, read_cub_split

URLS = (
    "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
    "http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/CUB_200_2011.tgz",
)
FOLDER_NAME = "CUB_200_2011"


def cub_root(folder: Path) -> Path:
    """Accept either the CUB_200_2011/ folder itself or the folder holding it."""
    return folder / FOLDER_NAME if (folder / FOLDER_NAME).is_dir() else folder


def verify(root: Path) -> str:
    train = read_cub_split(root, train=True)
    test = read_cub_split(root, train=False)
    return (
        f"CUB ready: {root} ({len(train.paths)} train / {len(test.paths)} test images, "
        f"{train.num_classes} classes); use --data {root}"
    )


def extract(archive: Path, dest: Path, expected_md5: str) -> Path:
    actual = file_digest(archive, "md5")
    if actual != expected_md5:
        raise DataError(f"{archive} has md5 {actual}; expected {expected_md5} (the official {ARCHIVE_NAME})")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return cub_root(dest)


def download(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / ARCHIVE_NAME
    for url in URLS:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, atomic_file(target, "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
            return target
        except OSError:
            continue
    raise DataError(
        f"could not download {ARCHIVE_NAME}; fetch {ARCHIVE_NAME} (md5 {ARCHIVE_MD5}) from "
        f"https://data.caltech.edu/records/65de6-vp158 and put it at {target}, then run this again"
    )


def prepare(dest: Path, source: Path | None, allow_download: bool, expected_md5: str) -> str:
    if source is not None:
        if source.is_dir():
            return verify(cub_root(source))
        if source.is_file():
            return verify(extract(source, dest, expected_md5))
        raise DataError(f"{source} does not exist; expected {ARCHIVE_NAME} or an extracted {FOLDER_NAME}/ folder")
    if (cub_root(dest) / "images.txt").is_file():
        return verify(cub_root(dest))
    archive = dest / ARCHIVE_NAME
    if not archive.is_file():
        if not allow_download:
            raise DataError(
                f"no {ARCHIVE_NAME} at {archive}; fetch it (md5 {ARCHIVE_MD5}) from "
                f"https://data.caltech.edu/records/65de6-vp158 and put it at {archive}"
            )
        archive = download(dest)
    return verify(extract(archive, dest, expected_md5))


@dataclass
class PrepareCubConfig:
    dest: Path = option(help="folder that receives CUB_200_2011/")
    source: Optional[Path] = option(
        None,
        default_text=f"DEST/{ARCHIVE_NAME}, else a download",
        help=f"an existing {ARCHIVE_NAME} or extracted {FOLDER_NAME}/ folder",
    )
    no_download: bool = option(False, help="never touch the network")
    md5: str = option(ARCHIVE_MD5, help="expected archive md5 (the official archive's)")


@console_script("python -m lskd_vision.prepare_cub")
def main(argv=None) -> None:
    args = parse_config(PrepareCubConfig, argv, prog="python -m lskd_vision.prepare_cub", description=__doc__)
    print(prepare(args.dest, args.source, not args.no_download, args.md5))


if __name__ == "__main__":
    main()
