"""fairseq-train used to abort (SIGABRT) at exit when its prefetch thread was still running."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end to end: deselect with -m "not slow"

SCRIPT = Path(__file__).with_name("prefetch_exit_script.py")


def run(*flags) -> int:
    return subprocess.run([sys.executable, "-W", "ignore", str(SCRIPT), *flags], capture_output=True).returncode


def test_plugin_exit_hook_stops_the_prefetch_thread():
    if run() == 0:
        pytest.skip("this torch/fairseq no longer aborts with a live prefetch thread; nothing to guard")
    assert [run("--with-plugin") for _ in range(3)] == [0, 0, 0]
