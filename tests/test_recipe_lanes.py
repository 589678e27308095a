"""recipes/lib.sh run_lanes: lanes run JOBS at a time, a failing lane names its stage at once while the
lane beside it finishes, and the grid then fails."""
import subprocess
import time

from conftest import REPO

LANE_SCRIPT = r"""
set -euo pipefail
source "$1/recipes/lib.sh"
RUN_DIR="$2"
LANE_SECONDS="$3"
lane() {
    if [ "$1" = broken ]; then
        stage "work-$1" "$RUN_DIR/$1.done" bash -c 'echo "no such teacher"; exit 3'
    else
        stage "work-$1" "$RUN_DIR/$1.done" bash -c "sleep $LANE_SECONDS; touch $RUN_DIR/$1.done"
    fi
}
run_lanes lane ${LANES}
echo "after lanes"
"""


def run_lanes(tmp_path, lanes, jobs, seconds="2"):
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", LANE_SCRIPT, "lanes", str(REPO), str(tmp_path), seconds],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "LANES": lanes, "JOBS": jobs})
    return result, time.monotonic() - started


def test_lanes_run_jobs_at_a_time(tmp_path):
    together, together_seconds = run_lanes(tmp_path / "together", "a b", "2")
    one_by_one, one_by_one_seconds = run_lanes(tmp_path / "one-by-one", "a b", "1")
    for result in (together, one_by_one):
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("done  work-") == 2 and result.stdout.rstrip().endswith("after lanes")
    assert together_seconds < 3.5 <= 4 <= one_by_one_seconds
    assert together.stdout.index("start work-b") < together.stdout.index("done  work-a")


def test_failing_lane_names_its_stage_and_fails_the_grid_after_the_other_lane(tmp_path):
    result, _ = run_lanes(tmp_path, "broken a", "2", seconds="1")
    assert result.returncode != 0 and "after lanes" not in result.stdout
    assert "done  work-a" in result.stdout and (tmp_path / "a.done").exists()
    failures = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert len(failures) == 1
    assert failures[0].startswith("failed work-broken after") and "(exit 3): no such teacher" in failures[0]
