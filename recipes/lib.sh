# Shared by the vision and NMT recipes: REPO_ROOT, PYTHON, run names, and `stage`, which runs one step of a
# grid unless its output exists, logs it to RUN_DIR/logs/<stage>.log and prints one progress line.
# Expects RUN_DIR (and GPUS for the vision launcher).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$REPO_ROOT/.venv/bin/python" ] && echo "$REPO_ROOT/.venv/bin/python" || echo python3)}"

alpha_name() { printf '%.1f' "$1"; }

CURRENT_STAGE=""
STAGE_LOG=""
STAGE_STARTED=0

# On a failed stage the script stops (set -e); this prints the one line that says which stage and why.
report_failed_stage() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -n "$CURRENT_STAGE" ]; then
        local last_line
        last_line="$(grep -v '^[[:space:]]*$' "$STAGE_LOG" 2>/dev/null | tail -n 1 || true)"
        echo "failed $CURRENT_STAGE after $((SECONDS - STAGE_STARTED))s (exit $status): ${last_line:-no output} (log: $STAGE_LOG)" >&2
    fi
}
trap report_failed_stage EXIT

# stage NAME DONE_PATH COMMAND...: skip when DONE_PATH exists; otherwise run COMMAND with its output appended
# to RUN_DIR/logs/NAME.log. COMMAND must create DONE_PATH last, so an interrupted stage runs again.
stage() {
    local name="$1" done_path="$2"
    shift 2
    if [ -e "$done_path" ]; then
        echo "skip  $name: $done_path exists"
        return 0
    fi
    mkdir -p "$RUN_DIR/logs"
    CURRENT_STAGE="$name" STAGE_LOG="$RUN_DIR/logs/$name.log" STAGE_STARTED=$SECONDS
    echo "start $name (log: $STAGE_LOG)"
    echo "== $(date '+%F %T') $*" >>"$STAGE_LOG"
    "$@" >>"$STAGE_LOG" 2>&1
    echo "done  $name in $((SECONDS - STAGE_STARTED))s"
    CURRENT_STAGE=""
}

# run_lanes LANE ARG...: the function LANE once per ARG, JOBS (default 1) lanes at a time, each lane in a
# process of its own (a CPU grid's teachers, each with its students, are independent of one another). A failing
# lane prints its failed-stage line at once; the lanes beside it finish, then run_lanes fails.
run_lanes() {
    local lane="$1" failed=0 batch=() arg
    shift
    if [ "${JOBS:-1}" -le 1 ]; then
        for arg; do "$lane" "$arg"; done
        return 0
    fi
    for arg; do
        (trap report_failed_stage EXIT; "$lane" "$arg") &
        batch+=("$!")
        if [ "${#batch[@]}" -ge "$JOBS" ]; then
            wait_all "${batch[@]}" || failed=1
            batch=()
        fi
    done
    wait_all "${batch[@]}" || failed=1
    return "$failed"
}

wait_all() {  # PID...: wait for every one; fails when any failed
    local pid status=0
    for pid; do wait "$pid" || status=1; done
    return "$status"
}

# The cores this process may use; nproc alone would report OMP_NUM_THREADS, which CPU recipes set to 1.
cores() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }

# check_jobs DEFAULT: JOBS (lanes at once) defaults to DEFAULT and must be a positive integer.
check_jobs() {
    JOBS="${JOBS:-$1}"
    [[ "$JOBS" =~ ^[0-9]+$ ]] && [ "$JOBS" -ge 1 ] || {
        echo "$(basename "$0"): JOBS '$JOBS': expected an integer >= 1 (grid lanes run at once)" >&2
        exit 2
    }
}

launch() {
    if [ "${GPUS:-1}" -gt 1 ]; then
        "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m lskd_vision.cli "$@"
    else
        "$PYTHON" -m lskd_vision.cli "$@"
    fi
}

# run_stage NAME lskd-vision-arguments... (without --out): a vision run, finished when its metrics.json exists.
run_stage() {
    local name="$1"
    shift
    stage "$name" "$RUN_DIR/$name/metrics.json" launch "$@" --out "$RUN_DIR/$name" --resume
}

# summarise PAPER [METRIC]: the alpha x T table of the grid (METRIC, default best.top1, from each run),
# next to the paper's numbers when PAPER names a table.
summarise() {
    "$PYTHON" -m lskd_report.results "$RUN_DIR" --paper "$1" --metric "${2:-best.top1}" --out "$RUN_DIR/results"
}
