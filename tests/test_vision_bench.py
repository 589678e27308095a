"""The KD benchmark runs the trainer's step functions and writes consistent JSON and markdown."""
import json

import pytest

from bench.vision_kd import main


def test_benchmark_outputs_are_consistent(tmp_path):
    main(["--teacher", "resnet18", "--student", "resnet18", "--batch-size", "2", "--image-size", "32",
          "--classes", "10", "--steps", "1", "--warmup", "1", "--repeats", "3", "--out-dir", str(tmp_path)])
    result = json.loads((tmp_path / "results-vision.json").read_text())
    assert len(result["repeats"]) == 3
    for repeat in result["repeats"]:
        assert repeat["ratio"] == pytest.approx(repeat["t_kd_ms"] / repeat["t_ce_ms"])
        assert repeat["limit"] == pytest.approx(1 + repeat["t_teacher_ms"] / repeat["t_ce_ms"])
    assert result["meets_goal"] == (result["median"]["ratio_over_limit"] <= 1.05)
    table = (tmp_path / "results-vision.md").read_text()
    assert f"{result['median']['ratio']:.3f}" in table
