"""Architectures, the penultimate hook point and checkpoint formats."""

from fractions import Fraction

import pytest
import torch

from lskd.errors import DataError, InvalidConfig
from lskd_vision.checkpoint import read_state_dict
from lskd_vision.models import build_model, load_weights, penultimate_and_classifier


@pytest.mark.parametrize(
    "arch, shape",
    [("digits_cnn", (3, 1, 8, 8)), ("resnet18", (3, 3, 32, 32)), ("mobilenet_v2", (3, 3, 32, 32))],
)
def test_penultimate_features_through_the_classifier_give_the_logits(arch, shape):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7).eval()
    hooked, linear = penultimate_and_classifier(model)
    assert isinstance(linear, torch.nn.Linear) and linear.out_features == 7
    captured = []
    handle = hooked.register_forward_hook(lambda module, inputs, output: captured.append(output.flatten(1)))
    with torch.no_grad():
        logits = model(torch.randn(shape))
    handle.remove()
    assert captured[0].shape == (3, linear.in_features)
    torch.testing.assert_close(linear(captured[0]), logits)


def test_official_pth_tar_with_module_prefixes_loads(tmp_path):
    source = build_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18-0.1-best.pth.tar"
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet18",
            "best_acc1": torch.tensor(70.0),
            "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()},
        },
        path,
    )
    state = read_state_dict(path)
    target = build_model("resnet18", num_classes=1000)
    load_weights(target, state, "resnet18", path, keep_classifier=True)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_fine_tuning_keeps_backbone_and_replaces_head(tmp_path):
    source = build_model("resnet18", num_classes=1000)
    path = tmp_path / "imagenet.pth"
    torch.save(source.state_dict(), path)
    target = build_model("resnet18", num_classes=200)
    load_weights(target, read_state_dict(path), "resnet18", path, keep_classifier=False)
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    assert target.fc.out_features == 200


def test_checkpoint_needing_unsafe_unpickling_is_refused(tmp_path):
    """Fraction stands for any pickled object torch does not allow (argparse.Namespace is allowed once the
    fairseq plugin is imported, since fairseq checkpoints need it)."""
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": build_model("digits_cnn", 10).state_dict(), "args": Fraction(1, 3)}, path)
    with pytest.raises(DataError, match="weights_only=True"):
        read_state_dict(path)


def test_wrong_architecture_names_the_mismatch(tmp_path):
    path = tmp_path / "digits.pth"
    torch.save(build_model("digits_cnn_small", 10).state_dict(), path)
    with pytest.raises(InvalidConfig, match="does not fit --arch digits_cnn"):
        load_weights(build_model("digits_cnn", 10), read_state_dict(path), "digits_cnn", path, keep_classifier=True)


def test_hook_point_found_for_a_plain_torchvision_model():
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=3)
    hooked, linear = penultimate_and_classifier(model)
    assert hooked is model.avgpool and linear is model.fc
