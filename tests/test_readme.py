"""The README's teacher -> student -> generate -> sacreBLEU example runs as written (fewer updates)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert score["name"] == "BLEU" and 0.0 <= score["score"] <= 100.0
    assert (tmp_path / "runs/readme/student/checkpoint_best.pt").exists()
    hypotheses = (tmp_path / "runs/readme/student.hyp").read_text().splitlines()
    assert len(hypotheses) == len((tmp_path / "runs/readme/toy/test.tgt").read_text().splitlines())
