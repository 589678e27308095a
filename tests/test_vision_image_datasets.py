"""CUB and ImageNet end to end on tiny generated images laid out by release-format metadata:
fine-tune a teacher from an official-format ImageNet checkpoint, then distil a student from it."""

import json

import torch

from lskd_vision.cli import main
from lskd_vision.models import build_model
from lskd_vision_testdata import cub_subset, run, tiny_jpeg
from release_fixtures import write_imagenet_val_labels
from repo_root import REPO

TINY = [
    "--crop-size",
    "16",
    "--resize-size",
    "16",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--no-amp",
    "--no-channels-last",
    "--threads",
    "1",
]


def test_cub_teacher_fine_tuned_from_imagenet_checkpoint_then_student(tmp_path):
    cub = cub_subset(tmp_path / "data")
    imagenet = build_model("resnet18", 1000)
    official = tmp_path / "resnet18-0.1-best.pth.tar"
    torch.save(
        {"epoch": 90, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in imagenet.state_dict().items()}},
        official,
    )

    teacher_dir = tmp_path / "teacher-a0.1"
    main(
        [
            "train-teacher",
            "--dataset",
            "cub",
            "--data",
            str(cub),
            "--arch",
            "resnet18",
            "--alpha",
            "0.1",
            "--init",
            str(official),
            "--lr",
            "0",
            "--out",
            str(teacher_dir),
            *TINY,
        ]
    )
    teacher = torch.load(teacher_dir / "best.pth", weights_only=True)
    assert teacher["state_dict"]["fc.weight"].shape == (2, 512)
    assert torch.equal(teacher["state_dict"]["conv1.weight"], imagenet.conv1.weight)  # lr 0: backbone as loaded

    student_dir = tmp_path / "student-a0.1-T2"
    main(
        [
            "train-student",
            "--dataset",
            "cub",
            "--data",
            str(cub),
            "--arch",
            "mobilenet_v2",
            "--teacher",
            str(teacher_dir / "best.pth"),
            "-T",
            "2",
            "--out",
            str(student_dir),
            *TINY,
        ]
    )
    summary = json.loads((student_dir / "metrics.json").read_text())
    validation_images = sum(
        1 for line in (cub / "train_test_split.txt").read_text().splitlines() if line.endswith(" 0")
    )
    for key in ("final", "best", "teacher"):
        correct = summary[key]["top1"] * validation_images / 100
        assert abs(correct - round(correct)) < 1e-6  # a percentage of whole images
        assert summary[key]["top5"] == 100.0  # two classes: the top-k is all of them


def test_imagenet_layout_from_prepared_val(tmp_path):
    meta = tmp_path / "meta"
    write_imagenet_val_labels(meta, classes=20, images=200)
    rows = (meta / "LOC_val_solution.csv").read_text().splitlines()[1:]
    wnids = sorted({row.split(",")[1].split()[0] for row in rows[:200]})[:3]
    val = tmp_path / "imagenet" / "val"
    chosen = [row.split(",")[0] for row in rows if row.split(",")[1].split()[0] in wnids][:12]
    for number, stem in enumerate(chosen):
        tiny_jpeg(val / f"{stem}.JPEG", number)
    for wnid in wnids:
        for number in range(4):
            tiny_jpeg(tmp_path / "imagenet" / "train" / wnid / f"{wnid}_{number}.JPEG", number)
    prepared = run(
        [
            "bash",
            str(REPO / "data-prep" / "prepare-imagenet-val.sh"),
            str(val),
            str(meta / "LOC_val_solution.csv"),
            "--allow-partial",
        ]
    )
    assert prepared.returncode == 0, prepared.stderr
    out = tmp_path / "teacher-a0.0"
    main(
        [
            "train-teacher",
            "--dataset",
            "imagenet",
            "--data",
            str(tmp_path / "imagenet"),
            "--arch",
            "resnet18",
            "--out",
            str(out),
            *TINY,
        ]
    )
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["config"]["lr_step"] == 30 and summary["config"]["epochs"] == 1  # preset, then the flag
    assert (out / "checkpoint.pth").is_file() and (out / "metrics.csv").is_file()
