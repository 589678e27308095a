"""How a grid runs, without training: each stage's settings record and the refusal of changed settings
(lskd_grid.stages), the RUN_DIR lock and the stop on a signal (recipes/lib.sh), the Slurm executor's refusals
and its DRY_RUN job graph (lskd_grid.slurm). The Slurm executor on a real cluster: tests/test_slurm_grid.py."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from environment import PYTHON
from lskd.errors import InvalidConfig
from lskd_grid.recipe_settings import settle
from lskd_grid.recipe_table import RECIPES
from lskd_grid.settle import stage_code
from lskd_grid.stages import check_records, redo_paths
from recipe_runs import run_recipe
from repo_root import REPO

TOY = RECIPES["toy_translation"]


def toy_plan(run_dir, *argv):
    values = settle(TOY, ["--tiny", "--run-dir", str(run_dir), "--alphas", "0.0 0.1", "--temperatures", "2", *argv], {})
    return values, TOY.plan(values)


def record_all(run_dir, stages):
    (run_dir / "stages").mkdir(parents=True, exist_ok=True)
    for stage in stages:
        (run_dir / "stages" / f"{stage.name}.json").write_text(stage.record())


def test_the_stage_graph_links_each_student_to_what_it_distils_from(tmp_path):
    _, stages = toy_plan(tmp_path, "--kd-modes", "word seq")
    after = {stage.name: stage.after for stage in stages}
    assert after["teacher-a0.1-s1"] == ("data",)
    assert after["cache-a0.1-s1"] == after["distill-a0.1-s1"] == ("teacher-a0.1-s1",)
    assert after["student-a0.1-T2-word-s1"] == ("cache-a0.1-s1",)
    assert after["student-a0.1-seq-s1"] == ("distill-a0.1-s1",)
    assert after["eval-student-a0.1-seq-s1"] == ("student-a0.1-seq-s1",)
    evaluations = [name for name in after if name.startswith("eval-")]
    assert after["results"] == tuple(evaluations) and len(evaluations) == 6
    names = [stage.name for stage in stages]
    assert all(names.index(need) < names.index(name) for name in names for need in after[name])


def test_changed_settings_are_refused_naming_the_run_and_the_settings(tmp_path):
    _, before = toy_plan(tmp_path)
    record_all(tmp_path, before)
    _, same = toy_plan(tmp_path)
    assert check_records("toy_translation", str(tmp_path), same, redo=False) == []
    _, other = toy_plan(tmp_path, "--lr", "1e-3")
    with pytest.raises(InvalidConfig) as refused:
        check_records("toy_translation", str(tmp_path), other, redo=False)
    message = str(refused.value)
    assert message.startswith(f"RUN_DIR {tmp_path}: teacher-a0.0-s1 ran with other settings (LR '2e-3' -> '1e-3')")
    assert "also changed: student-a0.0-T2-word-s1, teacher-a0.1-s1, student-a0.1-T2-word-s1" in message
    assert "REDO_CHANGED=1" in message


def test_redo_deletes_the_changed_stages_and_every_stage_after_them_only(tmp_path):
    _, before = toy_plan(tmp_path)
    record_all(tmp_path, before)
    _, other = toy_plan(tmp_path, "--topk", "8")
    redo = check_records("toy_translation", str(tmp_path), other, redo=True)
    assert [stage.name for stage in redo] == [
        "cache-a0.0-s1",
        "student-a0.0-T2-word-s1",
        "eval-student-a0.0-T2-word-s1",
        "cache-a0.1-s1",
        "student-a0.1-T2-word-s1",
        "eval-student-a0.1-T2-word-s1",
        "results",
    ]
    paths = redo_paths(str(tmp_path), redo)
    assert f"{tmp_path}/teacher-a0.0-s1/cache-top8" in paths and f"{tmp_path}/student-a0.1-T2-word-s1" in paths
    assert not any(path.endswith(("teacher-a0.0-s1", "/data", "training-finished")) for path in paths)


def test_settle_code_names_each_stage_its_done_file_and_record(tmp_path):
    values, stages = toy_plan(tmp_path)
    code = stage_code(TOY, values)
    result = subprocess.run(
        ["bash", "-c", code + '\nprintf "%s\\n" "${STAGE_DONE[results]}" "${STAGE_RECORD[teacher-a0.1-s1]}"'],
        capture_output=True,
        text=True,
        check=True,
    )
    done, record = result.stdout.splitlines()
    assert done == f"{tmp_path}/results.csv"
    assert json.loads(record)["settings"]["ALPHA"] == "0.1" and json.loads(record)["settings"]["LR"] == "2e-3"


STAGE_SCRIPT = r"""
set -euo pipefail
source "$1/recipes/lib.sh"
RUN_DIR="$2" RECIPE=lanes
lock_run_dir -x
lane() {
    STAGE_DONE[work-$1]="$RUN_DIR/$1.done"
    STAGE_RECORD[work-$1]="{\"settings\": {\"lane\": \"$1\"}}"
    stage "work-$1" "$RUN_DIR/$1.done" \
        bash -c "echo \$\$ >\"$RUN_DIR/$1.pid\"; sleep 300 & echo \$! >\"$RUN_DIR/$1.child\"; wait"
}
run_lanes lane ${LANES}
"""


def start_lanes(run_dir, lanes="a b", group=False):
    run_dir.mkdir(exist_ok=True)
    return subprocess.Popen(
        ["bash", "-c", STAGE_SCRIPT, "lanes", str(REPO), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"], "LANES": lanes, "JOBS": "2"},
        start_new_session=group,
        preexec_fn=default_interrupt,
    )


def default_interrupt():
    """A suite started in the background of a non-interactive shell (``nohup make test &``) inherits SIGINT
    ignored, and bash cannot trap a signal ignored at its start: the recipe starts with the default, as from a
    terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return int(path.read_text())


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize(
    "sent, status, group",
    [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False), (signal.SIGINT, 130, True)],
    ids=["SIGTERM to the recipe", "SIGINT to the recipe", "SIGINT to its process group (Ctrl-C, timeout -s INT)"],
)
def test_a_signal_ends_every_process_the_run_started_with_one_line(tmp_path, sent, status, group):
    run = start_lanes(tmp_path / "grid", group=group)
    pids = [wait_for(tmp_path / "grid" / f"{lane}.{kind}") for lane in "ab" for kind in ("pid", "child")]
    assert all(map(alive, pids))
    bystander = subprocess.Popen(["sleep", "300"])
    if group:
        os.killpg(run.pid, sent)
    else:
        run.send_signal(sent)
    out, err = run.communicate(timeout=30)
    assert run.returncode == status
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(
        rf"lanes: SIG{sent.name[3:]}: stopped \d+ processes \(stages: work-a work-b\); the same command resumes",
        lines[0],
    )
    assert not any(map(alive, pids))
    assert alive(bystander.pid)
    bystander.kill()
    bystander.wait()
    records = {path.name: json.loads(path.read_text()) for path in (tmp_path / "grid" / "stages").iterdir()}
    assert records == {f"work-{lane}.json": {"settings": {"lane": lane}} for lane in "ab"}


def test_a_second_run_on_a_run_dir_in_use_is_refused_naming_the_first(tmp_path):
    first = start_lanes(tmp_path / "grid", "a")
    wait_for(tmp_path / "grid" / "a.pid")
    second = start_lanes(tmp_path / "grid", "b")
    out, err = second.communicate(timeout=30)
    assert second.returncode == 2
    assert re.fullmatch(
        rf"lanes: error: RUN_DIR {tmp_path}/grid is in use by another run \(pid {first.pid}, lanes, started [^)]+\) "
        r"\(expected one run per RUN_DIR: wait for it or stop it\)",
        err.strip(),
    )
    assert not (tmp_path / "grid" / "b.pid").exists()
    first.terminate()
    first.communicate(timeout=30)
    third = start_lanes(tmp_path / "grid", "b")  # a stopped run leaves no lock behind
    wait_for(tmp_path / "grid" / "b.pid")
    third.terminate()
    assert third.communicate(timeout=30)[1].startswith("lanes: SIGTERM: stopped")


def test_dry_run_prints_the_paper_grid_job_graph_and_writes_nothing(tmp_path):
    result = run_recipe("iwslt14_de_en", {"EXECUTOR": "slurm", "DRY_RUN": "1", "RUN_DIR": "grid"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    jobs = {line.split()[-1]: line for line in lines if line.startswith("sbatch ")}
    assert len(jobs) == 1 + 2 * (1 + 1 + 1 + 4 * 2) + 1  # data; per teacher: it, eval, cache, 4 students + evals
    assert lines[-1] == "iwslt14_de_en: DRY_RUN=1: 24 jobs would be submitted, none was"
    assert "--dependency" not in jobs["data"]
    assert "'--dependency=afterok:<data>'" in jobs["teacher-a0.1-s1"]
    assert "'--dependency=afterok:<cache-a0.1-s1>'" in jobs["student-a0.1-T64-word-s1"]
    assert "--gpus-per-node=1" in jobs["student-a0.1-T64-word-s1"] and "--time=3-00:00:00" in jobs["teacher-a0.0-s1"]
    assert re.search(r"'--dependency=afterany:(<eval-[^>]+>:){9}<eval-[^>]+>'", jobs["results"])
    assert "--job-name=lskd-iwslt14_de_en-" in jobs["data"] and "--kill-on-invalid-dep=yes" in jobs["data"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"EXECUTOR": "pbs"}, "EXECUTOR 'pbs': expected local or slurm"),
        ({"EXECUTOR": "slurm", "NODES": "0"}, "NODES '0': expected an integer >= 1"),
        ({"EXECUTOR": "slurm", "GPUS": "-1"}, "GPUS '-1': expected an integer >= 0"),
        ({"EXECUTOR": "slurm", "TIME_TEACHER": "two days"}, "TIME_TEACHER 'two days': expected a Slurm time limit"),
        ({"EXECUTOR": "slurm", "MEM_PER_TASK": "lots"}, "MEM_PER_TASK 'lots': expected a size"),
        ({"NODES": "2"}, "NODES 2: a local run uses this one machine"),
    ],
)
def test_bad_executor_settings_are_refused_in_one_line_before_writing(tmp_path, env, needle):
    result = run_recipe("digits", {"RUN_DIR": "grid", **env}, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_slurm_without_sbatch_is_refused_saying_local_runs_here(tmp_path):
    result = subprocess.run(
        [str(PYTHON), "-m", "lskd_grid.slurm", "digits"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PATH": str(tmp_path), "EXECUTOR": "slurm", "RUN_DIR": "grid"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "digits: error: EXECUTOR=slurm: sbatch is not on PATH (expected a Slurm client; EXECUTOR=local runs the "
        "grid here)"
    )
    assert list(tmp_path.iterdir()) == []
