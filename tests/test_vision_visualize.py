"""``lskd-vision visualize`` on tiny digits checkpoints trained here: the figure and JSON it writes, that
the analysed features are the penultimate layer's (they reproduce the model's logits through its final
linear layer) labelled with classifier indices, and one-line refusals that leave --out untouched."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import lskd_vision.visualize as visualize_module
from lskd_report.diffusion_report import CLASS_COLOURS, AnalysisOutputs
from lskd_vision.cli import main
from lskd_vision.data import load_digits_split
from lskd_vision.models import build_model
from lskd_vision_testdata import cli

ARCH = "digits_cnn_small"
TRAINING = ["--dataset", "digits", "--arch", ARCH, "--epochs", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A label-smoothed teacher and a T = 3 student of it, two epochs each, as the CLI writes them."""
    root = tmp_path_factory.mktemp("digits-runs")
    main(["train-teacher", *TRAINING, "--alpha", "0.1", "--out", str(root / "teacher")])
    main(
        [
            "train-student",
            *TRAINING,
            "--teacher",
            str(root / "teacher" / "best.pth"),
            "-T",
            "3",
            "--out",
            str(root / "student"),
        ]
    )
    return {"teacher": root / "teacher" / "best.pth", "student": root / "student" / "best.pth"}


def first_rows_per_class(labels: np.ndarray, classes, cap: int) -> np.ndarray:
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:cap] for c in classes]))


@pytest.mark.slow
def test_cli_writes_figure_and_one_json_entry_per_model(tmp_path, checkpoints):
    out = tmp_path / "analysis"
    result = cli(
        "visualize",
        "--dataset",
        "digits",
        "--classes",
        "8",
        "1",
        "4",
        "--out",
        str(out),
        "--max-train-per-class",
        "20",
        "--max-valid-per-class",
        "10",
        "--device",
        "cpu",
        "--checkpoints",
        f"teacher α 0.1={checkpoints['teacher']}",
        f"student T 3={checkpoints['student']}",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "diffusion.json").read_text())
    assert list(report["models"]) == ["teacher α 0.1", "student T 3"]
    assert [report["classes"][role]["index"] for role in ("target", "similar", "control")] == [8, 1, 4]
    assert report["classes"]["target"]["name"] == "digit 8"
    for model in report["models"].values():
        assert model["train"]["samples"] == {"8": 20, "1": 20, "4": 20}
        assert model["valid"]["samples"] == {"8": 10, "1": 10, "4": 10}
        for split in ("train", "valid"):
            for space in ("penultimate", "projection_3d"):
                assert {"similar", "control"} <= set(model[split][space])
    assert report["inputs"]["checkpoints"]["student T 3"] == {"path": str(checkpoints["student"]), "arch": ARCH}
    with Image.open(out / "diffusion.png") as image:
        assert image.format == "PNG"
        colours = {pixel[:3] for _, pixel in image.convert("RGBA").getcolors(maxcolors=1 << 20)}
    for colour in CLASS_COLOURS:  # the centroid stars are drawn opaque in each class's colour
        assert tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) in colours


def test_features_are_the_penultimate_layer_with_classifier_labels(tmp_path, checkpoints, monkeypatch):
    captured = {}

    def keep_inputs(models, classes, out_dir, **kwargs):
        captured.update(models=models, classes=classes)
        return AnalysisOutputs(png=out_dir / "unused.png", json=out_dir / "unused.json")

    monkeypatch.setattr(visualize_module, "analyse_models", keep_inputs)
    classes, cap = (9, 3, 0), 12
    main(
        [
            "visualize",
            "--dataset",
            "digits",
            "--classes",
            *map(str, classes),
            "--out",
            str(tmp_path / "out"),
            "--max-valid-per-class",
            str(cap),
            "--batch-size",
            "7",
            "--checkpoints",
            f"s={checkpoints['student']}",
        ]
    )
    features = captured["models"]["s"]
    assert captured["classes"] == classes

    state = torch.load(checkpoints["student"], weights_only=True)["state_dict"]
    model = build_model(ARCH, 10)
    model.load_state_dict(state)
    model.eval()
    _, valid = load_digits_split()
    images, labels = valid.tensors
    rows = first_rows_per_class(labels.numpy(), classes, cap)
    with torch.no_grad():
        logits = model(images[rows])
        pooled = model.avgpool(model.features(images[rows]))

    assert torch.equal(torch.as_tensor(features.valid_labels), labels[rows])
    assert torch.allclose(torch.as_tensor(features.valid_features), pooled, atol=1e-5)
    weight, bias = torch.as_tensor(features.classifier_weight), torch.as_tensor(features.classifier_bias)
    assert torch.equal(weight, state["fc.weight"]) and torch.equal(bias, state["fc.bias"])
    assert torch.allclose(torch.as_tensor(features.valid_features) @ weight.T + bias, logits, atol=1e-4)
    train_counts = np.bincount(np.asarray(features.train_labels), minlength=10)
    all_train_counts = np.bincount(load_digits_split()[0].tensors[1].numpy(), minlength=10)
    assert [train_counts[c] for c in classes] == [min(150, all_train_counts[c]) for c in classes]
    assert set(np.flatnonzero(train_counts)) == set(classes)


def test_official_checkpoint_without_architecture_needs_arch(tmp_path, checkpoints):
    """The official .pth.tar layout: ``{'state_dict': ...}`` with DDP ``module.`` prefixes, no arch."""
    state = torch.load(checkpoints["teacher"], weights_only=True)["state_dict"]
    official = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}, "epoch": 2}, official)
    argv = [
        "visualize",
        "--dataset",
        "digits",
        "--checkpoints",
        f"official={official}",
        "--max-train-per-class",
        "5",
        "--max-valid-per-class",
        "5",
    ]
    expect_one_line_error(
        [*argv, "--out", str(tmp_path / "refused")],
        tmp_path / "refused",
        str(official),
        "does not record its architecture",
        "--arch",
    )
    main([*argv, "--arch", ARCH, "--out", str(tmp_path / "out")])
    assert list(json.loads((tmp_path / "out" / "diffusion.json").read_text())["models"]) == ["official"]


def expect_one_line_error(argv, out, *fragments):
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(stderr):
        main(argv)
    message = stderr.getvalue()
    assert exit_info.value.code == 2
    assert message.startswith("lskd-vision: error: ") and message.count("\n") == 1, message
    for fragment in fragments:
        assert fragment in message
    assert not out.exists()


@pytest.mark.parametrize(
    "classes, fragments",
    [
        (("3", "9", "10"), ("class index 10", "10 classes")),
        (("3", "3", "6"), ("3 distinct", "[3, 3, 6]")),
        (("3", "-1", "6"), ("class index -1",)),
    ],
)
def test_bad_classes_are_refused(tmp_path, checkpoints, classes, fragments):
    out = tmp_path / "out"
    argv = [
        "visualize",
        "--dataset",
        "digits",
        "--classes",
        *classes,
        "--out",
        str(out),
        "--checkpoints",
        f"t={checkpoints['teacher']}",
    ]
    expect_one_line_error(argv, out, *fragments)


def test_missing_checkpoint_is_refused(tmp_path, checkpoints):
    out, absent = tmp_path / "out", tmp_path / "absent.pth"
    argv = [
        "visualize",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--checkpoints",
        f"t={checkpoints['teacher']}",
        f"gone={absent}",
    ]
    expect_one_line_error(argv, out, str(absent), "does not exist")


@pytest.mark.slow
def test_checkpoint_with_other_class_count_is_refused_from_the_command_line(tmp_path, checkpoints):
    seven = tmp_path / "seven.pth"
    torch.save({"arch": ARCH, "state_dict": build_model(ARCH, 7).state_dict()}, seven)
    out = tmp_path / "out"
    result = cli(
        "visualize",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--checkpoints",
        f"t={checkpoints['teacher']}",
        f"seven={seven}",
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(seven) in lines[0] and "predicts 7 classes; expected 10" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--arch", ARCH, ARCH, ARCH], ("3 architectures for 1 checkpoints",)),
        (["--max-valid-per-class", "1"], ("--max-valid-per-class", "at least 2", "1")),
    ],
)
def test_bad_flags_are_refused(tmp_path, checkpoints, extra, fragments):
    out = tmp_path / "out"
    argv = ["visualize", "--dataset", "digits", "--out", str(out), "--checkpoints", f"t={checkpoints['teacher']}"]
    expect_one_line_error([*argv, *extra], out, *fragments)


def test_malformed_checkpoint_entry_is_refused(tmp_path, checkpoints):
    out = tmp_path / "out"
    expect_one_line_error(
        ["visualize", "--dataset", "digits", "--out", str(out), "--checkpoints", str(checkpoints["teacher"])],
        out,
        "is not NAME=CKPT",
    )
