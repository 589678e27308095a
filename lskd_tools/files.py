"""File and subprocess helpers shared by data preparation, evaluation and the teacher cache."""

import contextlib
import hashlib
import json
import os
import secrets
import subprocess
from pathlib import Path

from lskd.errors import InvalidConfig, ToolError

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


@contextlib.contextmanager
def atomic_file(path, mode: str = "w", **open_args):
    """A file object for writing ``path`` whole: it writes a temporary file in the same folder, which replaces
    ``path`` in one rename when the block ends and is removed when the block raises.

    Readers (and the recipes' "stage done" checks) see either the old file or the whole new one, never a
    half-written file left by a killed process. The data is on disk before the rename, so a crash of the
    machine cannot leave the new name on an empty file either. Text modes default to UTF-8.
    """
    path = Path(path)
    if "b" not in mode:
        open_args.setdefault("encoding", "utf-8")
    handle, temporary = _temporary_beside(path)
    try:
        with os.fdopen(handle, mode, **open_args) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _temporary_beside(path: Path) -> tuple[int, Path]:
    """A new hidden file next to ``path``, created with the permissions the umask gives any new file."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary
        except FileExistsError:
            continue


def atomic_write_text(path, text: str) -> None:
    with atomic_file(path) as out:
        out.write(text)


def atomic_write_json(path, document, sort_keys: bool = True, allow_nan: bool = True) -> None:
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=sort_keys, allow_nan=allow_nan) + "\n")


def staging_path(path) -> Path:
    """The name a file of a set is written under until ``publish`` renames it into place."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def publish(paths, marker, marker_text: str) -> None:
    """Complete a file set whose readers trust it only when ``marker`` exists: each file of ``paths``, written
    under its ``staging_path``, is renamed onto its name, then ``marker`` is written atomically. The old
    marker goes first, so an interrupted publish never pairs an old marker with a half-replaced set."""
    Path(marker).unlink(missing_ok=True)
    for path in paths:
        os.replace(staging_path(path), path)
    atomic_write_text(marker, marker_text)


def check_writable(folder, flag: str) -> None:
    """Refuse the folder given as ``flag`` when a file cannot be created in it (or, while it does not exist,
    in the nearest folder above it that would hold it), before any work. The probe file is removed at once."""
    folder = Path(folder)
    existing = next(parent for parent in (folder, *folder.absolute().parents) if parent.exists())
    if not existing.is_dir():
        where = "" if existing == folder else f": {existing}"
        raise InvalidConfig(f"{flag} {folder}{where} is a file; expected a folder")
    try:
        handle, probe = _temporary_beside(existing / "write-probe")
    except OSError as error:
        where = "" if existing == folder else f" (it would be created in {existing})"
        raise InvalidConfig(f"{flag} {folder} is not writable{where}: {error.strerror}") from None
    os.close(handle)
    probe.unlink()
