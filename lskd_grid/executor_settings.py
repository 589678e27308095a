"""The settings every grid recipe shares for where its stages run: the executor, redoing changed stages, and the
Slurm resources (partition, account, extra sbatch arguments, nodes, CPUs and memory per task, a time limit per
stage kind)."""

import re
from typing import Mapping

from lskd.checks import choice, integer
from lskd.errors import InvalidConfig
from lskd_grid.recipe_settings import Setting
from lskd_grid.stages import KINDS

TIME = re.compile(r"([0-9]+-)?[0-9]+(:[0-9]+){0,2}")
MEMORY = re.compile(r"([0-9]+)([KMGT]?)")
MEGABYTES = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}


def slurm_time(text: str) -> None:
    if not TIME.fullmatch(text):
        raise InvalidConfig("expected a Slurm time limit such as 30, 4:00:00 or 2-00:00:00")


def memory(text: str) -> None:
    if not MEMORY.fullmatch(text) or megabytes(text) < 1:
        raise InvalidConfig("expected a size such as 4000M or 16G")


def megabytes(text: str) -> int:
    number, unit = MEMORY.fullmatch(text).groups()
    return int(int(number) * MEGABYTES[unit])


def execution(times: Mapping[str, str], cpus: Mapping[str, str], mem: Mapping[str, str]) -> tuple[Setting, ...]:
    """``times``: the default time limit per stage kind (a value per profile where the recipe has profiles)."""
    return (
        Setting(
            "EXECUTOR",
            "local: the stages run on this machine, JOBS lanes at once; slurm: every stage not finished is "
            "submitted as an sbatch job that waits for what it needs, and the recipe exits",
            "local",
            choice("local", "slurm"),
        ),
        Setting(
            "REDO_CHANGED",
            "1: a stage recorded with other settings runs again, with every stage after it (their outputs are "
            "deleted first); 0: such a RUN_DIR is refused",
            "0",
            choice("0", "1"),
        ),
        Setting("DRY_RUN", "1 (EXECUTOR=slurm): print the sbatch command lines, submit nothing", "0", choice("0", "1")),
        Setting("NODES", "nodes per training run (EXECUTOR=slurm; GPUS is then per node)", "1", integer(1)),
        Setting("PARTITION", "sbatch --partition ('' = the cluster's default)", ""),
        Setting("ACCOUNT", "sbatch --account ('' = yours by default)", ""),
        Setting("SLURM_ARGS", "extra sbatch arguments for every job, e.g. '--qos=high --constraint=a100'", ""),
        Setting("CPUS_PER_TASK", "sbatch --cpus-per-task (a training run has one task per GPU)", cpus, integer(1)),
        Setting("MEM_PER_TASK", "memory per task, e.g. 16G", mem, memory),
        *(Setting(f"TIME_{kind.upper()}", f"time limit of each {kind} job", times[kind], slurm_time) for kind in KINDS),
    )


def check_execution(v: dict) -> None:
    if v["EXECUTOR"] == "local" and v["NODES"] != "1":
        raise InvalidConfig(
            f"NODES {v['NODES']}: a local run uses this one machine (expected NODES=1 or EXECUTOR=slurm)"
        )
    if v["EXECUTOR"] == "local" and v["DRY_RUN"] == "1":
        raise InvalidConfig("DRY_RUN=1 with EXECUTOR=local: a dry run prints sbatch lines (expected EXECUTOR=slurm)")
