# Shared by every recipe: REPO_ROOT, PYTHON, `settle` (the settings, checked in Python before anything is
# written), `stage`, which runs one step of a grid unless its output exists, logs it to RUN_DIR/logs/<stage>.log
# and prints one progress line, `run_lanes`, which runs a grid's teacher lanes side by side, and the vision stages.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$REPO_ROOT/.venv/bin/python" ] && echo "$REPO_ROOT/.venv/bin/python" || echo python3)}"

# settle RECIPE ARG...: the recipe's settings from the environment and its flags (lskd_grid.recipe_settings):
# every setting as a variable, the constants of the recipe, and the grid's planned runs in TEACHERS and STUDENTS
# (one row each: folder kind alpha temperature seed kd_mode teacher). A bad setting ends the script with one
# line and exit status 2; --help prints the settings and ends it with status 0.
settle() {
    local code
    RECIPE="$1"
    command -v "$PYTHON" >/dev/null || { echo "$1: PYTHON '$PYTHON': not found (expected the project's interpreter: run make setup)" >&2; exit 2; }
    code="$("$PYTHON" -m lskd_grid.recipe_settings "$@")" || exit $?
    eval "$code"
}

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

# run_fields ROW: the planned run's fields in RUN_NAME RUN_KIND RUN_ALPHA RUN_T RUN_SEED RUN_MODE RUN_TEACHER.
run_fields() { read -r RUN_NAME RUN_KIND RUN_ALPHA RUN_T RUN_SEED RUN_MODE RUN_TEACHER <<<"$1"; }

# lane_students TEACHER: the planned student rows of that teacher folder, in LANE_STUDENTS.
lane_students() {
    local row
    LANE_STUDENTS=()
    for row in "${STUDENTS[@]}"; do
        run_fields "$row"
        if [ "$RUN_TEACHER" = "$1" ]; then LANE_STUDENTS+=("$row"); fi
    done
}

# record_run ROW: RUN_DIR/<folder>/run.json, the manifest lskd-results reads, written when the run starts.
record_run() {
    local name kind alpha temperature seed mode teacher
    read -r name kind alpha temperature seed mode teacher <<<"$1"
    local args=(--kind "$kind" --alpha "$alpha" --seed "$seed" --metrics "$METRICS_FILE")
    if [ "$temperature" != - ]; then args+=(--temperature "$temperature"); fi
    if [ "$mode" != - ]; then args+=(--kd-mode "$mode"); fi
    if [ "$teacher" != - ]; then args+=(--teacher "$teacher"); fi
    "$PYTHON" -m lskd_grid.runs record "$RUN_DIR/$name" "${args[@]}"
}

# results_stage PAPER METRIC [lskd-results flags...]: the lskd-results table of the grid, rebuilt when a run
# started or finished since, then printed.
results_stage() {
    local table="$RUN_DIR/results.csv"
    if [ -f "$table" ] && [ -n "$(find "$RUN_DIR" -mindepth 2 -maxdepth 2 \( -name "$METRICS_FILE" -o -name run.json \) -newer "$table")" ]; then
        rm -f "$RUN_DIR/results.md" "$table"
    fi
    stage results "$table" "$PYTHON" -m lskd_report.results "$RUN_DIR" --paper "$1" --metric "$2" --out "$RUN_DIR/results" "${@:3}"
    cat "$RUN_DIR/results.md"
}

launch() {
    if [ "${GPUS:-1}" -gt 1 ]; then
        "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m lskd_vision.cli "$@"
    else
        "$PYTHON" -m lskd_vision.cli "$@"
    fi
}

vision_train() {  # ROW lskd-vision-arguments...
    local row="$1"
    shift
    run_fields "$row"
    record_run "$row"
    launch "$@" --seed "$RUN_SEED" --out "$RUN_DIR/$RUN_NAME" --resume
}

# vision_lane TEACHER_ROW: the teacher (VISION_ARGS and TEACHER_ARGS; with TEACHER_INIT_DIR set, it starts from
# TEACHER_INIT_DIR/<its folder name>/best.pth), then its students, each distilled from its best.pth (VISION_ARGS
# and STUDENT_ARGS). A run is finished when its metrics.json exists.
vision_lane() {
    local row teacher init=()
    run_fields "$1"
    teacher="$RUN_NAME"
    if [ -n "${TEACHER_INIT_DIR:-}" ]; then init=(--init "$TEACHER_INIT_DIR/$teacher/best.pth"); fi
    stage "$teacher" "$RUN_DIR/$teacher/metrics.json" vision_train "$1" train-teacher --alpha "$RUN_ALPHA" \
        "${VISION_ARGS[@]}" "${TEACHER_ARGS[@]}" "${init[@]}"
    lane_students "$teacher"
    for row in "${LANE_STUDENTS[@]}"; do
        run_fields "$row"
        stage "$RUN_NAME" "$RUN_DIR/$RUN_NAME/metrics.json" vision_train "$row" train-student \
            --teacher "$RUN_DIR/$teacher/best.pth" --temperature "$RUN_T" "${VISION_ARGS[@]}" "${STUDENT_ARGS[@]}"
    done
}

# vision_grid METRIC: every lane, JOBS at a time, then the results table against PAPER.
vision_grid() {
    echo "$RECIPE: ${#TEACHERS[@]} teachers, ${#STUDENTS[@]} students (SEEDS=\"$SEEDS\"), run folder $RUN_DIR, $JOBS lane(s) at once"
    run_lanes vision_lane "${TEACHERS[@]}"
    results_stage "$PAPER" "${1:-best.top1}"
}
