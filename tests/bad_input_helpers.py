"""What the bad-input tests share: read-only folders that hold even for root, and advice lskd must not give."""

import os
import shutil
from pathlib import Path

import pytest

# torch's own hint for a refused checkpoint; lskd must never pass it on (it disables the safety check).
TORCH_UNSAFE_ADVICE = "weights_only" + "=False"


def without_write_override(command: list) -> list:
    """``command`` run so that folder permissions hold even for root (which writes anywhere): as root it
    runs without the capabilities that override them (``setpriv``); skipped where that is not possible."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made read-only here")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
