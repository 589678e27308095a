"""``EXECUTOR=slurm``: a recipe's grid submitted as Slurm jobs, one per stage that is not finished, each waiting
for the stages it needs (``--dependency=afterok``; the results job ``afterany``, so it reports whatever became of
the runs). Every job runs the recipe script itself with ``LSKD_STAGE`` set, which runs that one stage exactly as a
local run does; only where it runs differs.

Resubmitting the same command submits only what is missing: a stage whose done file exists is skipped, and one
already queued or running (found by its job name with ``squeue``) is waited for, not submitted again. No Slurm
accounting is needed: only ``sbatch --parsable``, ``squeue`` and job names. ``DRY_RUN=1`` prints the sbatch
command lines and submits nothing.

``python -m lskd_grid.slurm RECIPE ARG...`` (what ``recipes/lib.sh`` runs for ``EXECUTOR=slurm``).
"""

import getpass
import hashlib
import math
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lskd.errors import InvalidConfig
from lskd_grid.executor_settings import megabytes
from lskd_grid.recipe_settings import settle
from lskd_grid.settle import recipe_from
from lskd_grid.stages import RECORDS, Stage, check_records, redo_paths
from lskd_tools.cli import run_command

REPO = Path(__file__).resolve().parent.parent
ACTIVE = "PENDING,RUNNING,CONFIGURING,REQUEUED,RESIZING,SUSPENDED"


@dataclass(frozen=True)
class Job:
    stage: Stage
    name: str
    options: tuple[str, ...]


def job_prefix(recipe: str, run_dir: str) -> str:
    """Job names carry the recipe and the RUN_DIR (hashed), so two grids never take each other's jobs."""
    digest = hashlib.sha1(os.path.abspath(run_dir).encode()).hexdigest()[:8]
    return f"lskd-{recipe}-{digest}-"


def resources(stage: Stage, values: dict) -> list[str]:
    gpus, cpus = int(values["GPUS"]), int(values["CPUS_PER_TASK"])
    options = [f"--time={values['TIME_' + stage.kind.upper()]}", f"--cpus-per-task={cpus}"]
    options.append(f"--mem-per-cpu={math.ceil(megabytes(values['MEM_PER_TASK']) / cpus)}M")
    if stage.parallel:
        options += [f"--nodes={values['NODES']}", f"--ntasks-per-node={max(gpus, 1)}"]
        if gpus:
            options.append(f"--gpus-per-node={gpus}")
    else:
        options += ["--nodes=1", "--ntasks=1"]
        if gpus and stage.kind not in ("data", "results"):
            options.append("--gpus-per-node=1")
    if values["PARTITION"]:
        options.append(f"--partition={values['PARTITION']}")
    if values["ACCOUNT"]:
        options.append(f"--account={values['ACCOUNT']}")
    return options + shlex.split(values["SLURM_ARGS"])


def plan_jobs(recipe: str, values: dict, stages: list[Stage]) -> list[Job]:
    prefix = job_prefix(recipe, values["RUN_DIR"])
    logs = Path(values["RUN_DIR"]) / "logs"
    return [
        Job(
            stage,
            prefix + stage.name,
            (
                "--parsable",
                f"--job-name={prefix + stage.name}",
                f"--output={logs / stage.name}.slurm-%j.out",
                "--kill-on-invalid-dep=yes",
                *resources(stage, values),
            ),
        )
        for stage in stages
    ]


def job_script(recipe: str, values: dict) -> str:
    """One script for every job of the grid: the settled settings, then the recipe for the stage it is given."""
    exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())
    return f"""#!/usr/bin/env bash
# A stage of the {recipe} grid, submitted by lskd_grid.slurm: the recipe runs it as a local run does.
set -euo pipefail
cd {shlex.quote(os.getcwd())}
{exports}
export EXECUTOR=local REDO_CHANGED=0 DRY_RUN=0 PYTHON={shlex.quote(sys.executable)}
unset LSKD_RUN_OWNER
LSKD_STAGE="$1" exec bash {shlex.quote(str(REPO / "recipes" / f"{recipe}.sh"))}
"""


def command(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool, *args], capture_output=True, text=True)


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [f"exit status {result.returncode}"])[0 if errors else -1]


def queued_jobs(prefix: str) -> dict[str, tuple[str, str]]:
    """Job name -> (id, state) of this grid's jobs that are queued or running."""
    result = command("squeue", "--noheader", f"--user={getpass.getuser()}", f"--states={ACTIVE}", "--format=%i %T %j")
    if result.returncode != 0:
        raise InvalidConfig(f"squeue failed: {last_line(result)} (expected a reachable Slurm controller)")
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, name = (line.strip().split(" ", 2) + ["", ""])[:3]
        if name.startswith(prefix):
            jobs[name] = (job_id, state)
    return jobs


def dependency(stage: Stage, ids: dict[str, str], also: tuple[str, ...] = ()) -> list[str]:
    waits = [ids[name] for name in stage.after if name in ids] + list(also)
    if not waits:
        return []
    return [f"--dependency={'afterany' if stage.kind == 'results' else 'afterok'}:{':'.join(waits)}"]


def check_client() -> None:
    for tool in ("sbatch", "squeue"):
        if shutil.which(tool) is None:
            raise InvalidConfig(
                f"EXECUTOR=slurm: {tool} is not on PATH (expected a Slurm client; EXECUTOR=local runs the grid here)"
            )


def submit(recipe: str, values: dict, stages: list[Stage], redo: list[Stage]) -> None:
    run_dir = Path(values["RUN_DIR"])
    script = run_dir / "slurm" / "job.sh"
    jobs = plan_jobs(recipe, values, stages)
    dry = values["DRY_RUN"] == "1"
    queued = {} if dry else queued_jobs(job_prefix(recipe, values["RUN_DIR"]))
    redone = {s.name for s in redo}
    ids: dict[str, str] = {}
    pending = []
    replaced = []
    for job in jobs:
        stage = job.stage
        waits = [name for name in stage.after if name in ids]
        if job.name in queued and stage.kind == "results" and pending:
            replaced.append(queued[job.name])  # it would not wait for the stages submitted now
            ids[stage.name] = f"<{stage.name}>"
            pending.append((job, waits))
        elif job.name in queued:
            ids[stage.name] = queued[job.name][0]
            print(f"queued    {stage.name}: job {ids[stage.name]} (already in the queue)")
        elif Path(stage.done).exists() and stage.name not in redone and not (stage.kind == "results" and ids):
            print(f"finished  {stage.name}: {stage.done} exists")
        else:
            ids[stage.name] = f"<{stage.name}>"
            pending.append((job, waits))
    if not pending:
        print(f"{recipe}: nothing to submit: every stage is finished or queued")
        return
    if dry:
        for job, _ in pending:
            line = ["sbatch", *job.options, *dependency(job.stage, ids), str(script), job.stage.name]
            print(" ".join(map(shlex.quote, line)))
        print(f"{recipe}: DRY_RUN=1: {len(pending)} jobs would be submitted, none was")
        return
    first = pending[0][0]
    test = command("sbatch", "--test-only", *first.options, "--wrap=true")
    if test.returncode != 0:
        raise InvalidConfig(f"sbatch refused the first job ({first.stage.name}): {last_line(test)}; nothing submitted")
    running = ()  # a results job already running: the new one also waits for it, so they never write at once
    for job_id, state in replaced:
        if state == "PENDING":
            command("scancel", job_id)
            print(f"cancelled results: job {job_id} (queued before the jobs submitted now; submitted again after them)")
        else:
            running = (job_id,)
    for path in redo_paths(values["RUN_DIR"], redo):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else Path(path).unlink(missing_ok=True)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / RECORDS).mkdir(parents=True, exist_ok=True)
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(job_script(recipe, values), encoding="utf-8")
    submitted = 0
    for job, waits in pending:
        stage = job.stage
        (run_dir / RECORDS / f"{stage.name}.json").write_text(stage.record() + "\n", encoding="utf-8")
        also = running if stage.kind == "results" else ()
        result = command("sbatch", *job.options, *dependency(stage, ids, also), str(script), stage.name)
        if result.returncode != 0:
            raise InvalidConfig(
                f"sbatch refused {stage.name}: {last_line(result)} ({submitted} jobs were submitted before it; "
                "the same command submits the rest)"
            )
        ids[stage.name] = result.stdout.strip().split(";")[0]
        submitted += 1
        after = ", ".join(f"{name} ({ids[name]})" for name in waits)
        print(f"submitted {stage.name}: job {ids[stage.name]}" + (f", after {after}" if after else ""))
    print(
        f"{recipe}: {submitted} jobs submitted; logs in {run_dir}/logs; results in {run_dir}/results.md when job "
        f"{ids['results']} ends (its jobs are named {job_prefix(recipe, values['RUN_DIR'])}<stage>)"
        if "results" in ids
        else f"{recipe}: {submitted} jobs submitted"
    )


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    recipe = recipe_from(argv)
    values = settle(recipe, argv[1:], os.environ)
    if values.get("EXECUTOR") != "slurm" or recipe.plan is None:
        raise InvalidConfig(f"{recipe.name}: expected a grid recipe with EXECUTOR=slurm")
    if values["DRY_RUN"] != "1":
        check_client()
    stages = recipe.plan(values)
    redo = check_records(recipe.name, values["RUN_DIR"], stages, values["REDO_CHANGED"] == "1")
    submit(recipe.name, values, stages, redo)


if __name__ == "__main__":
    recipe_name = sys.argv[1] if len(sys.argv) > 1 else "recipe"
    sys.exit(run_command(recipe_name, main))
