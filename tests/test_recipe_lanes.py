"""recipes/lib.sh run_lanes: lanes run JOBS at a time, a failing lane names its stage at once while the
lane beside it finishes, and the grid then fails. Concurrency is shown by marker files the lanes write, not by
timing: with JOBS=2 each lane waits (bounded) for the other's start marker, which one-at-a-time lanes never see."""

import subprocess

from repo_root import REPO

LANE_SCRIPT = r"""
set -euo pipefail
source "$1/recipes/lib.sh"
RUN_DIR="$2"
lane() {
    touch "$RUN_DIR/$1.started"
    for other in $LANES; do
        if [ -e "$RUN_DIR/$other.done" ]; then touch "$RUN_DIR/$1.after-$other"; fi
    done
    if [ "$WAIT_FOR_OTHERS" = 1 ]; then
        for other in $LANES; do
            for _ in $(seq 300); do [ -e "$RUN_DIR/$other.started" ] && break; sleep 0.1; done
            if [ -e "$RUN_DIR/$other.started" ]; then touch "$RUN_DIR/$1.saw-$other"; fi
        done
    fi
    if [ "$1" = broken ]; then
        stage "work-$1" "$RUN_DIR/$1.done" bash -c 'echo "no such teacher"; exit 3'
    else
        stage "work-$1" "$RUN_DIR/$1.done" touch "$RUN_DIR/$1.done"
    fi
}
run_lanes lane ${LANES}
echo "after lanes"
"""


def run_lanes(run_dir, lanes, jobs, wait_for_others):
    run_dir.mkdir()
    return subprocess.run(
        ["bash", "-c", LANE_SCRIPT, "lanes", str(REPO), str(run_dir)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LANES": lanes, "JOBS": jobs, "WAIT_FOR_OTHERS": str(int(wait_for_others))},
    )


def markers(run_dir):
    return {path.name for path in run_dir.iterdir() if path.is_file()}


def test_two_jobs_run_two_lanes_at_once(tmp_path):
    result = run_lanes(tmp_path / "together", "a b", "2", wait_for_others=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("done  work-") == 2 and result.stdout.rstrip().endswith("after lanes")
    assert {"a.saw-b", "b.saw-a"} <= markers(tmp_path / "together")  # each lane was running when the other began


def test_one_job_runs_lanes_one_after_the_other(tmp_path):
    result = run_lanes(tmp_path / "one-by-one", "a b", "1", wait_for_others=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("done  work-") == 2 and result.stdout.rstrip().endswith("after lanes")
    found = markers(tmp_path / "one-by-one")
    assert "b.after-a" in found and "a.after-b" not in found  # b began only once a had finished


def test_failing_lane_names_its_stage_and_fails_the_grid_after_the_other_lane(tmp_path):
    result = run_lanes(tmp_path / "grid", "broken a", "2", wait_for_others=True)
    assert result.returncode != 0 and "after lanes" not in result.stdout
    assert "done  work-a" in result.stdout and (tmp_path / "grid" / "a.done").exists()
    assert "a.saw-broken" in markers(tmp_path / "grid")  # a still ran beside the failing lane
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert len(failures) == 1
    assert failures[0].startswith("failed work-broken after") and "(exit 3): no such teacher" in failures[0]
