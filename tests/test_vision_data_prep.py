"""data-prep scripts on CUB and ImageNet metadata generated in the release formats, with tiny generated images;
(opt-in, LSKD_RELEASE_DATA) the same checks on the real release metadata."""

import os
import tarfile
from pathlib import Path

import pytest

from lskd_tools.files import file_digest
from lskd_vision.cub import read_cub_split
from lskd_vision_testdata import cub_subset, run, tiny_jpeg
from release_fixtures import CUB_FILES, release_folder, write_cub_metadata, write_imagenet_val_labels
from repo_root import REPO

PREPARE_CUB = str(REPO / "data-prep" / "prepare-cub.sh")
PREPARE_VAL = str(REPO / "data-prep" / "prepare-imagenet-val.sh")
REAL_CUB = ("cub-200-2011", "CUB_200_2011's images.txt, train_test_split.txt and image_class_labels.txt")
REAL_IMAGENET = (
    "imagenet",
    "LOC_val_solution.csv, LOC_synset_mapping.txt, ILSVRC2012_validation_ground_truth.txt and map_clsloc.txt",
)


def link_blank_images(root: Path, images_txt: Path) -> None:
    """One tiny image hard-linked at every path ``images_txt`` lists."""
    blank = root / "blank.jpg"
    tiny_jpeg(blank, 0)
    for line in images_txt.read_text().splitlines():
        target = root / "images" / line.split()[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(blank, target)


def check_split_against_folder_names(root: Path, classes: int) -> None:
    train, test = read_cub_split(root, train=True), read_cub_split(root, train=False)
    # Independent reference: the class folder's numeric prefix, minus one.
    for split in (train, test):
        assert [int(path.parent.name.split(".")[0]) - 1 for path in split.paths] == split.labels
    assert set(train.labels) == set(test.labels) == set(range(classes))
    assert not set(train.paths) & set(test.paths)


def test_cub_folder_is_verified_and_its_split_counted(tmp_path):
    root = tmp_path / "CUB_200_2011"
    images = write_cub_metadata(root, classes=12, images_per_class=7, seed=3)
    link_blank_images(root, root / "images.txt")
    result = run(["bash", PREPARE_CUB, str(tmp_path / "dest"), str(root)])
    assert result.returncode == 0, result.stderr
    train = sum(image.is_train for image in images)
    assert f"{train} train / {len(images) - train} test images, 12 classes" in result.stdout
    check_split_against_folder_names(root, 12)


def test_real_cub_metadata_gives_the_published_split(tmp_path):
    real = release_folder(*REAL_CUB)
    root = tmp_path / "CUB_200_2011"
    root.mkdir()
    for name in (*CUB_FILES, "classes.txt"):
        os.symlink(real / name, root / name)
    link_blank_images(root, real / "images.txt")
    result = run(["bash", PREPARE_CUB, str(tmp_path / "dest"), str(root)])
    assert result.returncode == 0, result.stderr
    assert "5994 train / 5794 test images, 200 classes" in result.stdout
    check_split_against_folder_names(root, 200)


def make_archive(tmp_path: Path) -> Path:
    root = cub_subset(tmp_path / "build")
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
        1
        for line in (tmp_path / "build" / "CUB_200_2011" / "train_test_split.txt").read_text().splitlines()
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


def flat_val_images(folder: Path, solution_csv: Path) -> list[str]:
    """Tiny images for the first SAMPLE rows of the (unsorted) solution file, plus image 1."""
    rows = solution_csv.read_text().splitlines()[1 : SAMPLE + 1]
    stems = [row.split(",")[0] for row in rows]
    for number, stem in enumerate(stems):
        tiny_jpeg(folder / f"{stem}.JPEG", number)
    tiny_jpeg(folder / "ILSVRC2012_val_00000001.JPEG", 1)
    return [*stems, "ILSVRC2012_val_00000001"]


def layout(folder: Path) -> set[tuple[str, str]]:
    return {(path.parent.name, path.name) for path in folder.glob("*/*.JPEG")}


def refolder_both_ways(tmp_path: Path, meta: Path) -> tuple[Path, list[str]]:
    """Re-folder the same images once by the Kaggle CSV and once by the devkit files; both must agree."""
    kaggle, devkit = tmp_path / "kaggle" / "val", tmp_path / "devkit" / "val"
    stems = flat_val_images(kaggle, meta / "LOC_val_solution.csv")
    flat_val_images(devkit, meta / "LOC_val_solution.csv")
    by_csv = run(["bash", PREPARE_VAL, str(kaggle), str(meta / "LOC_val_solution.csv"), "--allow-partial"])
    assert by_csv.returncode == 0, by_csv.stderr
    by_devkit = run(
        [
            "bash",
            PREPARE_VAL,
            str(devkit),
            str(meta / "ILSVRC2012_validation_ground_truth.txt"),
            str(meta / "map_clsloc.txt"),
            "--allow-partial",
        ]
    )
    assert by_devkit.returncode == 0, by_devkit.stderr
    assert layout(kaggle) == layout(devkit)
    assert len(layout(kaggle)) == len(set(stems)) and not list(kaggle.glob("*.JPEG"))
    synsets = {line.split()[0] for line in (meta / "LOC_synset_mapping.txt").read_text().splitlines()}
    assert {wnid for wnid, _ in layout(kaggle)} <= synsets
    return kaggle, stems


def test_imagenet_val_refolder_puts_each_image_under_its_wnid_by_csv_and_by_devkit(tmp_path):
    meta = tmp_path / "meta"
    written = write_imagenet_val_labels(meta, classes=30, images=300, seed=4)
    kaggle, stems = refolder_both_ways(tmp_path, meta)
    assert layout(kaggle) == {(written.labels[stem], f"{stem}.JPEG") for stem in stems}


def test_real_imagenet_val_labels_agree_between_kaggle_csv_and_devkit(tmp_path):
    kaggle, _ = refolder_both_ways(tmp_path, release_folder(*REAL_IMAGENET))
    assert (kaggle / "n01751748" / "ILSVRC2012_val_00000001.JPEG").is_file()  # sea snake, per the devkit docs


@pytest.fixture
def imagenet_meta(tmp_path):
    return tmp_path / "meta", write_imagenet_val_labels(tmp_path / "meta", classes=30, images=300, seed=5)


def test_imagenet_val_subset_is_refused_without_allow_partial(tmp_path, imagenet_meta):
    meta, written = imagenet_meta
    val = tmp_path / "val"
    stems = flat_val_images(val, meta / "LOC_val_solution.csv")
    result = run(["bash", PREPARE_VAL, str(val), str(meta / "LOC_val_solution.csv")])
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert f"lacks {len(written.labels) - len(set(stems))} of the {len(written.labels)}" in result.stderr
    assert not [path for path in val.iterdir() if path.is_dir()]


def test_imagenet_val_unlabelled_image_is_refused(tmp_path, imagenet_meta):
    meta, _ = imagenet_meta
    val = tmp_path / "val"
    flat_val_images(val, meta / "LOC_val_solution.csv")
    tiny_jpeg(val / "holiday_photo.JPEG", 5)
    result = run(["bash", PREPARE_VAL, str(val), str(meta / "LOC_val_solution.csv"), "--allow-partial"])
    assert result.returncode != 0 and "holiday_photo.JPEG" in result.stderr
    assert not [path for path in val.iterdir() if path.is_dir()]
