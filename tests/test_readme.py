"""The README's teacher -> student -> generate -> sacreBLEU example runs as written (fewer updates)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from repo_root import REPO

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Teacher → student → BLEU") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs(tmp_path):
    script = readme_example().replace("--max-update 200", "--max-update 30")
    assert "--max-update 30" in script
    (tmp_path / "lskd_fairseq").symlink_to(REPO / "lskd_fairseq")
    activate = tmp_path / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    score = json.loads(result.stdout[result.stdout.rindex('{\n "name"') :])
    assert (tmp_path / "runs/readme/student/checkpoint_best.pt").exists()
    references = (tmp_path / "runs/readme/toy/test.tgt").read_text().splitlines()
    hypotheses = hypotheses_by_id((tmp_path / "runs/readme/student.gen").read_text())
    in_order = [hypotheses[i] for i in range(len(references))]
    assert (tmp_path / "runs/readme/student.hyp").read_text().splitlines() == in_order
    rescored = BLEU().corpus_score(in_order, [references]).score  # the CLI prints it to one decimal
    assert score["name"] == "BLEU" and score["score"] == pytest.approx(rescored, abs=0.051)


def hypotheses_by_id(generate_output: str) -> dict[int, str]:
    """fairseq-generate's H-ID<tab>SCORE<tab>TEXT lines, read here rather than by the README's shell pipeline."""
    lines = (line.split("\t") for line in generate_output.splitlines() if line.startswith("H-"))
    return {int(key[2:]): text for key, _score, text in lines}
