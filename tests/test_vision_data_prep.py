"""data-prep scripts against the real CUB and ImageNet release metadata, with tiny generated images."""
import os
import tarfile
from pathlib import Path

import pytest

from lskd_vision.cub import read_cub_split
from lskd_tools.files import file_digest
from lskd_vision_testdata import CUB_FILES, CUB_META, IMAGENET_META, REPO, cub_subset, run, tiny_jpeg

PREPARE_CUB = str(REPO / "data-prep" / "prepare-cub.sh")
PREPARE_VAL = str(REPO / "data-prep" / "prepare-imagenet-val.sh")


@pytest.fixture(scope="module")
def full_cub(tmp_path_factory):
    """The real metadata (linked, not copied) with one tiny image hard-linked at every listed path."""
    root = tmp_path_factory.mktemp("cub") / "CUB_200_2011"
    root.mkdir()
    for name in (*CUB_FILES, "classes.txt"):
        os.symlink(CUB_META / name, root / name)
    blank = root / "blank.jpg"
    tiny_jpeg(blank, 0)
    for line in (CUB_META / "images.txt").read_text().splitlines():
        target = root / "images" / line.split()[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(blank, target)
    return root


def test_cub_folder_is_verified_with_the_published_split(full_cub, tmp_path):
    result = run(["bash", PREPARE_CUB, str(tmp_path / "dest"), str(full_cub)])
    assert result.returncode == 0, result.stderr
    assert "5994 train / 5794 test images, 200 classes" in result.stdout
    train = read_cub_split(full_cub, train=True)
    test = read_cub_split(full_cub, train=False)
    # Independent reference: the class folder's numeric prefix, minus one.
    for split in (train, test):
        assert [int(path.parent.name.split(".")[0]) - 1 for path in split.paths] == split.labels
    assert set(train.labels) == set(test.labels) == set(range(200))
    assert not set(train.paths) & set(test.paths)


def make_archive(tmp_path: Path) -> Path:
    root = cub_subset(tmp_path / "build", {1, 2})
    archive = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="CUB_200_2011")
    return archive


def test_cub_archive_is_md5_checked_then_extracted(tmp_path):
    archive = make_archive(tmp_path)
    dest = tmp_path / "data"
    refused = run(["bash", PREPARE_CUB, str(dest), str(archive)])
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0 and "97eceeb196236b17998738112f37df78" in refused.stderr
    assert not dest.exists()
    accepted = run(["bash", PREPARE_CUB, str(dest), str(archive), "--md5", file_digest(archive, "md5")])
    assert accepted.returncode == 0, accepted.stderr
    expected_train = sum(
        1 for line in (tmp_path / "build" / "CUB_200_2011" / "train_test_split.txt").read_text().splitlines()
        if line.split()[1] == "1"
    )
    assert f"{expected_train} train" in accepted.stdout and "2 classes" in accepted.stdout
    assert (dest / "CUB_200_2011" / "images.txt").is_file()


def test_cub_without_archive_says_which_file_to_fetch(tmp_path):
    result = run(["bash", PREPARE_CUB, str(tmp_path / "data"), "--no-download"])
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "CUB_200_2011.tgz" in lines[0] and str(tmp_path / "data" / "CUB_200_2011.tgz") in lines[0]


SAMPLE = 40


def flat_val_images(folder: Path) -> list[str]:
    rows = (IMAGENET_META / "LOC_val_solution.csv").read_text().splitlines()[1 : SAMPLE + 1]
    stems = [row.split(",")[0] for row in rows]
    for number, stem in enumerate(stems):
        tiny_jpeg(folder / f"{stem}.JPEG", number)
    tiny_jpeg(folder / "ILSVRC2012_val_00000001.JPEG", 1)
    return [*stems, "ILSVRC2012_val_00000001"]


def layout(folder: Path) -> set[tuple[str, str]]:
    return {(path.parent.name, path.name) for path in folder.glob("*/*.JPEG")}


def test_imagenet_val_refolder_agrees_between_kaggle_csv_and_devkit(tmp_path):
    kaggle, devkit = tmp_path / "kaggle" / "val", tmp_path / "devkit" / "val"
    stems = flat_val_images(kaggle)
    flat_val_images(devkit)
    by_csv = run(["bash", PREPARE_VAL, str(kaggle), str(IMAGENET_META / "LOC_val_solution.csv"), "--allow-partial"])
    assert by_csv.returncode == 0, by_csv.stderr
    by_devkit = run(
        ["bash", PREPARE_VAL, str(devkit), str(IMAGENET_META / "ILSVRC2012_validation_ground_truth.txt"),
         str(IMAGENET_META / "map_clsloc.txt"), "--allow-partial"]
    )
    assert by_devkit.returncode == 0, by_devkit.stderr
    assert layout(kaggle) == layout(devkit)
    assert len(layout(kaggle)) == len(set(stems)) and not list(kaggle.glob("*.JPEG"))
    assert (kaggle / "n01751748" / "ILSVRC2012_val_00000001.JPEG").is_file()  # sea snake, per the devkit docs
    synsets = {line.split()[0] for line in (IMAGENET_META / "LOC_synset_mapping.txt").read_text().splitlines()}
    assert {wnid for wnid, _ in layout(kaggle)} <= synsets


def test_imagenet_val_subset_is_refused_without_allow_partial(tmp_path):
    val = tmp_path / "val"
    flat_val_images(val)
    result = run(["bash", PREPARE_VAL, str(val), str(IMAGENET_META / "LOC_val_solution.csv")])
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert "lacks" in result.stderr and "50000" in result.stderr
    assert not [path for path in val.iterdir() if path.is_dir()]


def test_imagenet_val_unlabelled_image_is_refused(tmp_path):
    val = tmp_path / "val"
    flat_val_images(val)
    tiny_jpeg(val / "holiday_photo.JPEG", 5)
    result = run(["bash", PREPARE_VAL, str(val), str(IMAGENET_META / "LOC_val_solution.csv"), "--allow-partial"])
    assert result.returncode != 0 and "holiday_photo.JPEG" in result.stderr
    assert not [path for path in val.iterdir() if path.is_dir()]
