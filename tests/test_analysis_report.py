"""analyse_models end to end: the PNG and the JSON it writes, and the inputs it refuses before writing."""

import json

import matplotlib.image
import numpy as np
import pytest
import torch

from lskd.errors import InvalidConfig
from lskd_report.diffusion_report import ModelFeatures, analyse_models

CLASSES = (5, 7, 9)
NUM_CLASSES, DIM = 10, 16
VALID_LABELS = np.repeat(np.arange(NUM_CLASSES), 10)
ONE_SAMPLE_OF_NINE = np.where((VALID_LABELS == 9) & (np.arange(VALID_LABELS.size) % 10 > 0), 0, VALID_LABELS)


def synthetic_model(seed, stretch=1.0, n_train=60, n_valid=20):
    """Clusters around 4·w_c; with ``stretch`` > 1 classes 5 and 7 spread along the line between them."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(NUM_CLASSES, DIM))
    bias = rng.normal(size=NUM_CLASSES)
    direction = weight[7] - weight[5]
    direction /= np.linalg.norm(direction)

    def split(n):
        labels = np.repeat(np.arange(NUM_CLASSES), n)
        noise = rng.normal(size=(labels.size, DIM))
        similar = np.isin(labels, (5, 7))
        noise[similar] += (stretch - 1) * np.outer(noise[similar] @ direction, direction)
        return 4 * weight[labels] + noise, labels

    return ModelFeatures(*split(n_train), *split(n_valid), weight, bias)


def reference_anisotropy(features, labels, target, other):
    """η written out directly: std along the centroid line over per-dimension orthogonal std."""
    a, b = features[labels == target], features[labels == other]
    u = b.mean(0) - a.mean(0)
    u /= np.linalg.norm(u)
    centred = a - a.mean(0)
    along = centred @ u
    total = np.sum(centred**2) / len(a)
    return np.sqrt(np.mean(along**2)) / np.sqrt((total - np.mean(along**2)) / (features.shape[1] - 1))


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    models = {"teacher": synthetic_model(0), "student T=3": synthetic_model(0, stretch=5.0)}
    out_dir = tmp_path_factory.mktemp("analysis") / "out"
    outputs = analyse_models(models, CLASSES, out_dir, class_names=["poodle", "big poodle", "submarine"])
    return models, outputs


def test_png_has_one_row_per_model(report, tmp_path):
    models, outputs = report
    assert outputs.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = analyse_models({"teacher": models["teacher"]}, CLASSES, tmp_path).png
    two_rows, one_row = matplotlib.image.imread(outputs.png).shape, matplotlib.image.imread(single).shape
    assert two_rows[1] == one_row[1] and two_rows[0] == 2 * one_row[0]


def test_json_names_classes_and_says_the_measure_is_ours(report):
    _, outputs = report
    content = strict_json(outputs.json)
    assert content["classes"] == {
        "target": {"index": 5, "name": "poodle"},
        "similar": {"index": 7, "name": "big poodle"},
        "control": {"index": 9, "name": "submarine"},
    }
    assert "never published" in content["measure"]
    assert list(content["models"]) == ["teacher", "student T=3"]
    for model in content["models"].values():
        assert model["train"]["samples"] == {"5": 60, "7": 60, "9": 60}
        assert model["valid"]["samples"] == {"5": 20, "7": 20, "9": 20}
        assert model["train"]["projection_3d"]["dimension"] == 3
        assert model["train"]["penultimate"]["dimension"] == DIM


@pytest.mark.parametrize("split", ["train", "valid"])
def test_json_measures_match_the_formula_and_show_diffusion(report, split):
    models, outputs = report
    content = strict_json(outputs.json)["models"]
    for name, model in models.items():
        features, labels = getattr(model, f"{split}_features"), getattr(model, f"{split}_labels")
        penultimate = content[name][split]["penultimate"]
        for pair, other in (("similar", 7), ("control", 9)):
            assert penultimate[pair]["anisotropy"] == pytest.approx(reference_anisotropy(features, labels, 5, other))
    student, teacher = content["student T=3"][split], content["teacher"][split]
    for space in ("penultimate", "projection_3d"):
        assert student[space]["similar"]["anisotropy"] > 2 * teacher[space]["similar"]["anisotropy"]
        assert student[space]["similar"]["separation"] < teacher[space]["similar"]["separation"] / 2
        rise = {
            pair: student[space][pair]["anisotropy"] / teacher[space][pair]["anisotropy"]
            for pair in ("similar", "control")
        }
        assert rise["similar"] > rise["control"]


def test_torch_tensors_are_accepted(tmp_path):
    model = synthetic_model(1)
    as_torch = ModelFeatures(*(torch.as_tensor(value) for value in vars(model).values()))
    outputs = analyse_models({"torch": as_torch}, CLASSES, tmp_path, stem="torch")
    assert strict_json(outputs.json)["classes"]["target"] == {"index": 5, "name": "5"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"valid_labels": ONE_SAMPLE_OF_NINE}, r"model 'bad': valid split has 1 sample\(s\) of class 9"),
        ({"classifier_weight": np.zeros((8, DIM))}, "class index 9 is outside the classifier's 8 classes"),
        ({"classifier_bias": np.zeros(3)}, "classifier bias has 3 entries, the weight has 10 rows"),
        ({"train_features": np.zeros((600, DIM + 1))}, "features have 17 dimensions, the classifier expects 16"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, change, message):
    bad = ModelFeatures(**{**vars(synthetic_model(2, n_valid=10)), **change})
    out_dir = tmp_path / "never"
    with pytest.raises(InvalidConfig, match=message):
        analyse_models({"good": synthetic_model(3), "bad": bad}, CLASSES, out_dir)
    assert not out_dir.exists()


def test_wrong_number_of_class_names_is_refused(tmp_path):
    with pytest.raises(InvalidConfig, match="class_names must name the 3 classes"):
        analyse_models({"m": synthetic_model(4)}, CLASSES, tmp_path / "never", class_names=["a", "b"])
    assert not (tmp_path / "never").exists()


def test_summary_table_lists_every_model_with_its_measures():
    from lskd_report.diffusion_report import summary_markdown

    pair = {"anisotropy": 2.5, "separation": 1.25}
    split = {"penultimate": {"similar": pair, "control": {"anisotropy": None, "separation": 3.0}}}
    report = {
        "classes": {role: {"name": role.upper()} for role in ("target", "similar", "control")},
        "models": {"teacher": {"train": split, "valid": split}, "student": {"train": split, "valid": split}},
    }
    table = summary_markdown(report)
    rows = [line for line in table.splitlines() if line.startswith("| teacher") or line.startswith("| student")]
    assert rows == [
        "| teacher | 2.500 | 1.250 | — | 2.500 | 1.250 | — |",
        "| student | 2.500 | 1.250 | — | 2.500 | 1.250 | — |",
    ]
    assert "target TARGET, similar SIMILAR, control CONTROL" in table
