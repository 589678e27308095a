"""The ``--out`` folder of a training run: checked before any work, claimed by the run that fills it.

A run first writes ``lskd-vision.json`` (its settings: the claim), then only its own files (checkpoints,
``metrics.csv``, ``steps.csv``, ``tensorboard/``, ``metrics.json``). A recipe may record the run's manifest
(``run.json``) there before it starts. A folder holding anything else and no claim is someone else's, and is
refused rather than having rows appended to a file the run did not write.
"""

from pathlib import Path
from typing import Optional

from lskd.errors import InvalidConfig
from lskd_grid.runs import MANIFEST
from lskd_tools.files import atomic_write_json, check_writable
from lskd_vision import checkpoint
from lskd_vision.config import TrainConfig
from lskd_vision.logbook import METRICS_JSON

SETTINGS = "lskd-vision.json"


def is_claimed(out: Path) -> bool:
    """A run of ours: its claim, or a checkpoint written before runs claimed their folders."""
    return (out / SETTINGS).is_file() or (out / checkpoint.LATEST).is_file()


def check_out_folder(config: TrainConfig) -> None:
    out = Path(config.out)
    check_writable(out, "--out")
    if not out.exists():
        return
    if (out / METRICS_JSON).exists():
        raise InvalidConfig(f"--out {out} already holds a finished run ({METRICS_JSON}); expected a new folder")
    if not is_claimed(out):
        foreign = sorted(entry.name for entry in out.iterdir() if entry.name != MANIFEST)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise InvalidConfig(
                f"--out {out} holds files this run did not write ({shown}); expected a new or "
                f"empty folder, or the folder of an earlier lskd-vision run to --resume"
            )
    if (out / checkpoint.LATEST).exists() and not config.resume:
        raise InvalidConfig(f"--out {out} already holds {checkpoint.LATEST}; pass --resume or use a new folder")


def claim(config: TrainConfig, fresh: bool) -> None:
    """Create the folder and record the settings of the run that owns it, before anything else is written.
    A run that starts afresh (no checkpoint to resume) records its own settings, replacing those of an
    earlier attempt that never reached a checkpoint; a resumed run keeps the record of what trained it."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if fresh or not (out / SETTINGS).exists():
        atomic_write_json(out / SETTINGS, config.to_json(), sort_keys=False)


# Settings that say how a run executes, not what it trains: a resumed run may change them.
EXECUTION_ONLY = ("out", "data", "workers", "device", "threads", "resume", "stop_after", "kd_kernel", "channels_last")


def check_resumed_settings(config: TrainConfig, recorded: Optional[dict], latest: Path) -> None:
    """A resumed run continues with exactly the settings its checkpoint was trained with, or is refused
    naming each differing one, so its records never describe settings that did not train it."""
    if recorded is None:
        raise InvalidConfig(
            f"--resume: {latest} records no run settings, so this run cannot check that it continues the same "
            f"training; start a new --out"
        )
    asked = config.to_json()
    differing = [name for name in asked if name not in EXECUTION_ONLY and recorded.get(name) != asked[name]]
    if differing:

        def flags(values: dict) -> str:
            return ", ".join(f"--{name.replace('_', '-')} {values.get(name)}" for name in differing)

        raise InvalidConfig(
            f"--resume: {latest} was trained with {flags(recorded)}; this run asks for {flags(asked)}; "
            f"resume with the checkpoint's settings or start a new --out"
        )
