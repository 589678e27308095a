"""lskd-vision refuses a temperature whose KD arithmetic cannot stay finite, before writing --out."""

import json

import pytest
import torch

from lskd_vision.cli import main
from lskd_vision.models import build_model


@pytest.mark.parametrize(
    "temperature, message",
    [("inf", "finite number, got inf"), ("nan", "finite number, got nan"), ("1e20", "must be <= 1e+12")],
)
def test_unbounded_temperature_is_refused(tmp_path, capsys, temperature, message):
    teacher, out = tmp_path / "teacher.pth", tmp_path / "run"
    torch.save({"arch": "digits_cnn", "state_dict": build_model("digits_cnn", 10).state_dict()}, teacher)
    with pytest.raises(SystemExit) as exit_info:
        main(["train-student", "--dataset", "digits", "--teacher", str(teacher), "-T", temperature, "--out", str(out)])
    text = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert text.startswith("lskd-vision: error: ") and text.count("\n") == 1 and message in text
    assert not out.exists()


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_resume_with_changed_settings_is_refused_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train-teacher", "--dataset", "digits", "--device", "cpu", "--workers", "0", "--out", str(out)]
    main([*args, "--epochs", "3", "--alpha", "0.1", "--stop-after", "1"])
    before = snapshot(out)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--resume", "--alpha", "0.0", "--lr", "0.05", "--epochs", "5"])
    text = capsys.readouterr().err
    assert exit_info.value.code == 2 and text.count("\n") == 1, text
    assert text.startswith("lskd-vision: error: --resume: ")
    trained, asked = "--epochs 3, --lr 0.1, --alpha 0.1", "--epochs 5, --lr 0.05, --alpha 0.0"
    assert f"trained with {trained}; this run asks for {asked}; resume with the checkpoint's" in text
    assert snapshot(out) == before
    # how the run executes may change: it continues, and every record names the settings that trained it
    main([*args[:-2], "--out", str(out), "--resume", "--epochs", "3", "--alpha", "0.1", "--workers", "1"])
    metrics = json.loads((out / "metrics.json").read_text())
    recorded = json.loads((out / "lskd-vision.json").read_text())
    assert [record["epoch"] for record in metrics["history"]] == [1, 2, 3]
    for settings in (metrics["config"], recorded):
        assert (settings["alpha"], settings["lr"], settings["epochs"]) == (0.1, 0.1, 3)


def test_a_fresh_start_in_a_claimed_folder_records_its_own_settings(tmp_path):
    """An attempt that never reached a checkpoint leaves only its claim: the next run starts afresh and
    its record must not keep the earlier attempt's settings."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "lskd-vision.json").write_text(json.dumps({"alpha": 0.3, "epochs": 9}))
    main(["train-teacher", "--dataset", "digits", "--device", "cpu", "--epochs", "1", "--out", str(out), "--resume"])
    recorded = json.loads((out / "lskd-vision.json").read_text())
    assert (recorded["alpha"], recorded["epochs"]) == (0.0, 1)
