"""File and subprocess helpers shared by data preparation, evaluation and the teacher cache."""
import hashlib
import subprocess
from pathlib import Path

# Written into a prepared bin/ folder by lskd-prepare-iwslt; lskd-evaluate reads it for the text profile.
MANIFEST = "lskd-prep.json"


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks so archives of any size fit in memory."""
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def run_tool(command: list[str], name: str) -> None:
    """Run ``command``; a failure raises with the tool's ``name``, exit status and last line of output."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise RuntimeError(f"{name} failed (exit {result.returncode}): {' '.join(tail)}")
