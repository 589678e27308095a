"""The checkout the tests run from: its recipes, docs and data-prep scripts are read and run as written."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
