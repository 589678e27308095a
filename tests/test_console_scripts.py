"""Every lskd command, run as users run it (``script_runs``): a bad flag is one ``PROG: error:`` line with exit
status 2, and ``--help`` shows the default of every optional flag."""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from script_runs import run_script

BIN = Path(sys.executable).parent
CONSOLE_SCRIPTS = (
    "lskd-toy-corpus",
    "lskd-prepare-iwslt",
    "lskd-evaluate",
    "lskd-results",
    "lskd-dump-teacher",
    "lskd-fairseq-diffusion",
    "lskd-vision",
    "lskd-export-ct2",
    "lskd-distill-corpus",
)
MODULES = (
    "lskd_vision.prepare_cub",
    "lskd_vision.prepare_imagenet",
    "lskd_grid.runs",
    "lskd_grid.grid",
    "lskd_nmt.ted_multi",
    "lskd_report.diffusion_report",
)
# (command line, the prog its errors name)
COMMANDS = [([str(BIN / name)], name) for name in CONSOLE_SCRIPTS] + [
    ([sys.executable, "-m", module], f"python -m {module}") for module in MODULES
]
SUBCOMMANDS = {
    "lskd-vision": ("train-teacher", "train-student", "visualize"),
    "python -m lskd_grid.runs": ("record",),
    "python -m lskd_grid.grid": ("plan",),
}
BAD_FLAG_RUNS = COMMANDS + [(command + [sub], prog) for command, prog in COMMANDS for sub in SUBCOMMANDS.get(prog, ())]
HELP_PAGES = [(command + [sub], prog) for command, prog in COMMANDS for sub in SUBCOMMANDS.get(prog, ())] + [
    (command, prog) for command, prog in COMMANDS if prog not in SUBCOMMANDS
]


def run(command, *args):
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if command[0] != sys.executable:
        return run_script(Path(command[0]).name, *command[1:], *args, env=environment)
    return subprocess.run([*command, *args], capture_output=True, text=True, env=environment)


@functools.lru_cache(maxsize=None)
def help_page(*command: str) -> subprocess.CompletedProcess:
    """``COMMAND --help``, run once per command (each start imports torch, some fairseq)."""
    return run(command, "--help")


def ids(cases):
    return [" ".join(Path(part).name for part in command[-2:]) for command, _ in cases]


@pytest.mark.parametrize("command, prog", BAD_FLAG_RUNS, ids=ids(BAD_FLAG_RUNS))
def test_bad_flag_is_one_error_line_and_exit_2(command, prog):
    result = run(command, "--no-such-flag")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr


def optional_flags(usage: str) -> set[str]:
    return set(re.findall(r"\[(--?[\w-]+)", usage)) - {"-h"}


def option_entries(options: str) -> dict[str, str]:
    """Each flag of the options section -> its whole help entry, whitespace collapsed."""
    entries, current = {}, None
    for line in options.splitlines():
        if re.match(r"^  -", line):
            current = [line]
            for flag in re.findall(r"(?:^|, )(--?[\w-]+)", line.strip().split("  ")[0]):
                entries[flag] = current
        elif current is not None:
            current.append(line)
    return {flag: " ".join(" ".join(lines).split()) for flag, lines in entries.items()}


@pytest.mark.parametrize("command, prog", HELP_PAGES, ids=ids(HELP_PAGES))
def test_help_shows_every_default(command, prog):
    result = help_page(*command)
    assert result.returncode == 0, result.stderr[-2000:]
    usage, _, options = result.stdout.partition("\n\n")
    flags = optional_flags(" ".join(usage.split()))
    entries = option_entries(options)
    assert flags, result.stdout
    missing = sorted(flag for flag in flags if "(default: " not in entries.get(flag, ""))
    assert not missing, result.stdout


@pytest.mark.parametrize(
    "command, flag, default",
    [
        (["lskd-toy-corpus"], "--train", "4000"),
        (["lskd-dump-teacher"], "--topk", "4"),
        (["lskd-dump-teacher"], "--device", "auto"),
        (["lskd-fairseq-diffusion"], "--device", "auto"),
        (["lskd-evaluate"], "--beam", "5"),
        (["lskd-evaluate"], "--engine", "fairseq"),
        (["lskd-export-ct2"], "--quantization", "float32"),
        (["lskd-distill-corpus"], "--max-tokens", "12000"),
        (["lskd-distill-corpus"], "--fallback-to-reference", "on"),
        (["lskd-vision", "visualize"], "--device", "auto"),
        (["lskd-vision", "visualize"], "--max-train-per-class", "150"),
    ],
)
def test_help_prints_the_value_the_command_uses(command, flag, default):
    result = help_page(str(BIN / command[0]), *command[1:])
    assert f"(default: {default})" in option_entries(result.stdout.partition("\n\n")[2])[flag]


def test_vision_help_lists_the_preset_values():
    result = help_page(str(BIN / "lskd-vision"), "train-student")
    presets = {line.split(":")[0].strip(): line for line in result.stdout.splitlines() if "-student:" in line}
    assert "epochs=200" in presets["imagenet-student"] and "digits-student" in presets


def test_the_diffusion_table_of_a_missing_report_is_one_error_line(tmp_path):
    missing = tmp_path / "diffusion.json"
    result = run([sys.executable, "-m", "lskd_report.diffusion_report"], str(missing))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"python -m lskd_report.diffusion_report: error: {missing}: cannot read the diffusion JSON "
        f"([Errno 2] No such file or directory: '{missing}')"
    ]
