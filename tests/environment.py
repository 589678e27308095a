"""This environment's interpreter and console scripts: the tests run the commands users run from it."""

import sys
from pathlib import Path

PYTHON = Path(sys.executable)
BIN_DIR = PYTHON.parent
