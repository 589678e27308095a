"""The compiled kernel's cache folder, kept so that a damaged, foreign or read-only cache cannot crash a run.

torch's JIT builder (``torch.utils.cpp_extension.load``) builds into ``$TORCH_EXTENSIONS_DIR/NAME`` and loads
whatever library ninja there considers up to date: a truncated library (a full disk, an interrupted copy)
then kills the process inside ``dlopen`` (SIGBUS) before anything is printed; two checkouts sharing NAME
rebuild it in turn (their ``build.ninja`` names different source paths); and it always creates its ``lock``
file, so a read-only cache is never used. Here:

- NAME ends in a digest of everything the library depends on (the source's bytes, the flags, torch's
  version and folder, Python's version), and the source is staged into the build folder, so checkouts with
  the same source share one build and a build never serves other sources;
- a finished build writes ``lskd-build.json`` beside the library: its file name, size and sha256;
- a library is loaded only after its bytes match that manifest; a verified build loads without taking any
  lock, so a read-only cache holding one (a container image, a shared install) is used as it is;
- a missing or damaged build is rebuilt from scratch when the folder is writable (under a lock, so
  concurrent processes build it once); otherwise the caller gets the reason (``BuildUnavailable``).
"""

import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import torch

logger = logging.getLogger(__name__)

MANIFEST = "lskd-build.json"
LOCK = "lskd-build.lock"


class BuildUnavailable(RuntimeError):
    """The kernel cannot be loaded or built here; the message says why, in one line."""


def build_name(base: str, source: Path, cflags: list[str]) -> str:
    """``base`` plus a digest of the inputs of the build, so different builds never share a folder."""
    digest = hashlib.sha256()
    parts = [source.read_bytes(), *cflags, torch.__version__, str(Path(torch.__file__).parent), sys.version]
    for part in [*parts, platform.machine()]:
        data = part if isinstance(part, bytes) else part.encode()
        digest.update(len(data).to_bytes(8, "little") + data)
    return f"{base}_{digest.hexdigest()[:16]}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_problem(directory: Path, library: Path) -> str:
    """Why ``library`` must not be loaded ("" when its bytes are those its build recorded)."""
    manifest = directory / MANIFEST
    if not library.is_file():
        return f"{library.name} is not built"
    try:
        recorded = json.loads(manifest.read_text())
        expected = (recorded["library"], recorded["bytes"], recorded["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{library.name} has no readable build manifest ({MANIFEST})"
    size = library.stat().st_size
    if expected[:2] != (library.name, size) or expected[2] != file_sha256(library):
        return f"{library.name} ({size} bytes) does not match its build manifest ({expected[1]} bytes, sha256 recorded)"
    return ""


def import_library(name: str, library: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_manifest(directory: Path, library: Path) -> None:
    record = {"library": library.name, "bytes": library.stat().st_size, "sha256": file_sha256(library)}
    staged = directory / f".{MANIFEST}.{os.getpid()}"
    staged.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(staged, directory / MANIFEST)


def _clear_build(directory: Path, library: Path) -> None:
    """Remove a damaged or unverified build's outputs, so ninja rebuilds every one of them."""
    for path in [library, directory / MANIFEST, *directory.glob("*.o")]:
        path.unlink(missing_ok=True)


def _stage_source(source: Path, directory: Path) -> Path:
    staged = directory / source.name
    if not staged.is_file() or staged.read_bytes() != source.read_bytes():
        shutil.copyfile(source, staged)
    return staged


def _compiler_problem() -> str:
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler: {compiler!r} is not on PATH (install one, or name it in CXX)"
    return ""


def failure_reason(error: Exception) -> str:
    """One line saying why a build failed: the error's first line and the first line of the compiler's or
    ninja's output that names an error, however long the output before it."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    head = f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
    detail = next((line for line in lines[1:] if re.search(r"error|not found|no such file", line, re.I)), "")
    return f"{head} ({detail[:300]})" if detail else head


def load_extension(base: str, source: Path, cflags: list[str]) -> ModuleType:
    """The verified build of ``source``, built first where needed and possible; ``BuildUnavailable`` otherwise."""
    from torch.utils.cpp_extension import LIB_EXT, _get_build_directory, load

    name = build_name(base, source, cflags)
    try:
        directory = Path(_get_build_directory(name, verbose=False))
    except OSError as error:
        raise BuildUnavailable(f"cannot create the kernel cache folder ({error})") from None
    library = directory / f"{name}{LIB_EXT}"
    problem = library_problem(directory, library)
    if not problem:
        return import_library(name, library)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BuildUnavailable(f"the kernel cache {directory} is read-only and {problem}")
    if compiler := _compiler_problem():
        raise BuildUnavailable(compiler)
    from filelock import FileLock

    with FileLock(str(directory / LOCK)):
        problem = library_problem(directory, library)  # another process may have built it meanwhile
        if not problem:
            return import_library(name, library)
        if library.exists():
            logger.warning("rebuilding the KD loss kernel in %s: %s", directory, problem)
        _clear_build(directory, library)
        try:
            module = load(name, [str(_stage_source(source, directory))], extra_cflags=cflags)
        except Exception as error:  # noqa: BLE001  compiler and ninja failures: the caller falls back
            raise BuildUnavailable(failure_reason(error)) from None
        _write_manifest(directory, library)
    return module
