"""Hand-made run folders (run.json and a metrics file) and ``lskd-results`` run in-process on them, for the
tests of the results table and of the grids that end in it."""

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

from lskd_grid.runs import RunManifest, write_manifest
from lskd_report.results import main


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def results(*args) -> Outcome:
    """``lskd-results`` in-process, through its console-script entry (exit status and error line included)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


def add_run(
    grid: Path,
    alpha,
    temperature=None,
    seed=1,
    value=None,
    kd_mode="word",
    metrics="metrics.json",
    metric_path=("best", "top1"),
    text=None,
) -> Path:
    """A run folder with its manifest; ``value`` None writes no metrics file, ``text`` writes that text."""
    kind = "teacher" if temperature is None and kd_mode != "seq" else "student"
    if kind == "teacher":
        name, manifest = f"t-{alpha}-s{seed}", RunManifest("teacher", alpha, seed, metrics=metrics)
    else:
        name = f"s-{alpha}-{kd_mode}-{temperature}-s{seed}"
        manifest = RunManifest("student", alpha, seed, temperature, kd_mode, f"t-{alpha}-s{seed}", metrics)
    run = grid / name
    write_manifest(run, manifest)
    if text is not None:
        (run / metrics).write_text(text)
    elif value is not None:
        document = value
        for key in reversed(metric_path):
            document = {key: document}
        (run / metrics).write_text(json.dumps(document))
    return run
