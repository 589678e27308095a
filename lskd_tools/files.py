"""File and subprocess helpers shared by data preparation, evaluation and the teacher cache."""
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from lskd.errors import ToolError

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
        raise ToolError(f"{name} failed (exit {result.returncode}): {' '.join(tail)}")


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    Readers (and the recipes' "stage done" checks) see either the old file or the whole new one, never a
    half-written file left by a killed process.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path, document) -> None:
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")
