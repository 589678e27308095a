"""BLEU as the ``sacrebleu`` command of this environment prints it: the independent number the tests compare
lskd's scores with, computed by a separate process from text files."""

import subprocess
from pathlib import Path

from environment import BIN_DIR

SACREBLEU_CLI = BIN_DIR / "sacrebleu"


def cli_bleu(tmp_path: Path, hypotheses, references, *options) -> float:
    """``sacrebleu REFS -i HYPS -b -w 6 OPTIONS`` on the lines given, written to ``tmp_path``."""
    (tmp_path / "cli.hyp").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    (tmp_path / "cli.ref").write_text("\n".join(references) + "\n", encoding="utf-8")
    result = subprocess.run(
        [str(SACREBLEU_CLI), str(tmp_path / "cli.ref"), "-i", str(tmp_path / "cli.hyp"), "-b", "-w", "6", *options],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip())
