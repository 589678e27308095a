"""Run a recipe as users run it: ``bash recipes/NAME.sh`` with this environment's interpreter."""

import os
import subprocess

from environment import PYTHON
from repo_root import REPO


def run_recipe(name, env, *args, cwd=None):
    """A recipe run as users run it: bash, this checkout's interpreter, the environment plus ``env``."""
    return subprocess.run(
        ["bash", str(REPO / "recipes" / f"{name}.sh"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHON": str(PYTHON), **env},
    )
