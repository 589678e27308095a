"""fairseq-train started by a multi-process launcher that fairseq does not join into one job.

torchrun sets ``WORLD_SIZE`` and starts one process per rank. fairseq joins them into one data-parallel job
only when its own ``--distributed-world-size`` (the number of GPUs by default, 1 on CPU) says so; otherwise
every process trains its own copy of the model at world size 1 and all of them write the same --save-dir.
fairseq initialises its process group before it builds the task and the criterion, so a rank of a launched
job that has none at that point is such an independent copy.
"""

import os

import torch.distributed as dist

from lskd.errors import InvalidConfig

CPU_DATA_PARALLEL = (
    "--distributed-backend gloo --ddp-backend legacy_ddp --distributed-no-spawn "
    "--distributed-init-method tcp://127.0.0.1:PORT --distributed-world-size N --distributed-rank R --device-id 0"
)


def check_data_parallel_launch() -> None:
    world = os.environ.get("WORLD_SIZE", "1")
    joined = dist.is_available() and dist.is_initialized()
    if world.isdigit() and int(world) > 1 and not joined:
        raise InvalidConfig(
            f"this process is one of WORLD_SIZE={world} launched ranks (torchrun), but fairseq runs it as an "
            f"independent job at --distributed-world-size 1, so each rank would train its own model into the same "
            f"--save-dir; on CPU start one fairseq-train per rank R (no torchrun) with {CPU_DATA_PARALLEL}"
        )
