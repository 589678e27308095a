# Shared by every recipe: REPO_ROOT, PYTHON, `settle` (the settings, checked in Python before anything is
# written), `stage`, which runs one step of a grid unless its output exists, logs it to RUN_DIR/logs/<stage>.log
# and prints one progress line, `run_lanes`, which runs a grid's teacher lanes side by side, and the vision stages.
# With EXECUTOR=slurm, settle hands the grid to lskd_grid.slurm, which submits each stage as a job; a job runs this
# same script with LSKD_STAGE set, which runs that one stage as a local run does.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$REPO_ROOT/.venv/bin/python" ] && echo "$REPO_ROOT/.venv/bin/python" || echo python3)}"
# The outermost recipe of this run (a demo runs two inside it): the one that reports an interrupt.
export LSKD_RUN_OWNER="${LSKD_RUN_OWNER:-$$}"
# A grid's stages (set by settle): stage -> the file that says it finished, and the settings record it writes.
declare -A STAGE_DONE=() STAGE_RECORD=()
# A student divergence -> its transfer settings that differ from the defaults, as its manifest records them.
declare -A TRANSFER_OPTIONS=()

# settle RECIPE ARG...: the recipe's settings from the environment and its flags (lskd_grid.settle):
# every setting as a variable, the constants of the recipe, and the grid's planned runs in TEACHERS and STUDENTS
# (one row each: folder kind alpha temperature seed kd_mode teacher). A bad setting ends the script with one
# line and exit status 2; --help prints the settings and ends it with status 0. For a grid it then holds the
# RUN_DIR lock (see lock_run_dir) and deletes what REDO_CHANGED=1 asks to run again.
settle() {
    local code
    RECIPE="$1"
    command -v "$PYTHON" >/dev/null || { echo "$1: PYTHON '$PYTHON': not found (expected the project's interpreter: run make setup)" >&2; exit 2; }
    code="$("$PYTHON" -m lskd_grid.settle "$@")" || exit $?
    eval "$code"
    [ "${#STAGE_DONE[@]}" -gt 0 ] || return 0
    if [ -n "${LSKD_STAGE:-}" ]; then
        [ -n "${STAGE_DONE[$LSKD_STAGE]+set}" ] || { echo "$RECIPE: error: LSKD_STAGE '$LSKD_STAGE': not a stage of this grid" >&2; exit 2; }
        JOBS=1
        lock_run_dir -s
    elif [ "$EXECUTOR" = slurm ]; then
        exec "$PYTHON" -m lskd_grid.slurm "$@"
    else
        lock_run_dir -x
    fi
    if [ "${#REDO_PATHS[@]}" -gt 0 ]; then
        echo "redo: settings changed; deleting ${REDO_PATHS[*]}"
        rm -rf -- "${REDO_PATHS[@]}"
    fi
}

# lock_run_dir -x|-s: a local grid holds RUN_DIR's lock alone (-x), the stages of a Slurm grid share it (-s), so
# a second local run on a RUN_DIR in use is refused, naming who holds it (RUN_DIR/.lskd-lock, removed at exit).
# The lock is the kernel's (flock on the folder): it ends with the last process that holds it, so a run that died
# leaves none behind.
lock_run_dir() {
    local holder="$RUN_DIR/.lskd-lock"
    mkdir -p "$RUN_DIR"
    exec {RUN_LOCK_FD}<"$RUN_DIR"
    if ! flock -n "$1" "$RUN_LOCK_FD"; then
        echo "$RECIPE: error: RUN_DIR $RUN_DIR is in use by another run ($(head -n 1 "$holder" 2>/dev/null || echo "stages of a Slurm grid")) (expected one run per RUN_DIR: wait for it or stop it)" >&2
        exit 2
    fi
    if [ "$1" = -x ]; then
        echo "pid $$, $RECIPE, started $(date '+%F %T')" >"$holder"
        LOCK_HOLDER="$holder"
    fi
    RUNNING_DIR="$(mktemp -d)"
}

CURRENT_STAGE=""
STAGE_LOG=""
STAGE_STARTED=0
RUNNING_DIR=""
LOCK_HOLDER=""

# On a failed stage the script stops (set -e); this prints the one line that says which stage and why.
report_failed_stage() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -n "$CURRENT_STAGE" ]; then
        local last_line
        last_line="$(grep -v '^[[:space:]]*$' "$STAGE_LOG" 2>/dev/null | tail -n 1 || true)"
        echo "failed $CURRENT_STAGE after $((SECONDS - STAGE_STARTED))s (exit $status): ${last_line:-no output} (log: $STAGE_LOG)" >&2
    fi
    if [ "$BASHPID" = "$$" ]; then rm -rf "${RUNNING_DIR:-/nonexistent}" "${LOCK_HOLDER:-/nonexistent}"; fi
}
trap report_failed_stage EXIT

# descendants PID: every process below PID, one pid a line, leaving out this listing's own processes.
descendants() {
    local self="$BASHPID"  # read here: each part of the pipeline below is a process of its own
    ps -e -o pid=,ppid= | awk -v root="$1" -v self="$self" '
        { parent[$1] = $2 }
        END {
            mine[root] = 1
            do {
                grew = 0
                for (p in parent) if (!(p in mine) && p != self && (parent[p] in mine)) { mine[p] = 1; grew = 1 }
            } while (grew)
            delete mine[root]
            for (p in mine) print p
        }' | sort -n
}

# stop_run SIGNAL: on Ctrl-C, SIGTERM or SIGHUP, end every process this run started and nothing else: they are
# frozen until no new one appears (none can start another), then terminated (killed after 10 s). The outermost
# recipe says in one line what it stopped; a rerun of the same command resumes.
stop_run() {
    local signal="$1" pids before="" stages=() waited
    trap - INT TERM HUP
    CURRENT_STAGE=""
    pids="$(descendants $$)"
    while [ -n "$pids" ] && [ "$pids" != "$before" ]; do
        kill -STOP $pids 2>/dev/null || true
        before="$pids"
        pids="$(descendants $$)"
    done
    if [ -n "$pids" ]; then
        kill -TERM $pids 2>/dev/null || true
        kill -CONT $pids 2>/dev/null || true
        for waited in $(seq 100); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
        kill -KILL $pids 2>/dev/null || true
    fi
    if [ -n "$RUNNING_DIR" ] && [ -d "$RUNNING_DIR" ]; then mapfile -t stages < <(ls "$RUNNING_DIR"); fi
    if [ "$LSKD_RUN_OWNER" = "$$" ]; then
        local count
        count="$(echo "$pids" | grep -c . || true)"
        echo "${RECIPE:-recipe}: SIG$signal: stopped $count processes${stages[*]:+ (stages: ${stages[*]})}; the same command resumes" >&2
    fi
    exit $((128 + $(kill -l "$signal")))
}
trap 'stop_run INT' INT
trap 'stop_run TERM' TERM
trap 'stop_run HUP' HUP

# stage NAME DONE_PATH COMMAND...: skip when DONE_PATH exists; otherwise record the stage's settings
# (RUN_DIR/stages/NAME.json) and run COMMAND with its output appended to RUN_DIR/logs/NAME.log. COMMAND must
# create DONE_PATH last, so an interrupted stage runs again. It runs in the background, waited for, so that a
# signal reaches the recipe at once. With LSKD_STAGE set (a Slurm job), only that stage runs.
stage() {
    local name="$1" done_path="$2"
    shift 2
    if [ -n "${LSKD_STAGE:-}" ] && [ "$name" != "$LSKD_STAGE" ]; then return 0; fi
    if [ -n "${STAGE_DONE[$name]+set}" ] && [ "${STAGE_DONE[$name]}" != "$done_path" ]; then
        echo "stage $name: done path $done_path differs from the plan's ${STAGE_DONE[$name]} (lskd_grid.stages)" >&2
        return 70
    fi
    if [ -e "$done_path" ]; then
        echo "skip  $name: $done_path exists"
        return 0
    fi
    mkdir -p "$RUN_DIR/logs"
    if [ -n "${STAGE_RECORD[$name]+set}" ]; then
        mkdir -p "$RUN_DIR/stages"
        printf '%s\n' "${STAGE_RECORD[$name]}" >"$RUN_DIR/stages/$name.json"
    fi
    CURRENT_STAGE="$name" STAGE_LOG="$RUN_DIR/logs/$name.log" STAGE_STARTED=$SECONDS
    echo "start $name (log: $STAGE_LOG)"
    echo "== $(date '+%F %T') $*" >>"$STAGE_LOG"
    if [ -n "$RUNNING_DIR" ]; then touch "$RUNNING_DIR/$name"; fi
    "$@" >>"$STAGE_LOG" 2>&1 &
    wait $!
    if [ -n "$RUNNING_DIR" ]; then rm -f "$RUNNING_DIR/$name"; fi
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

# run_fields ROW: the planned run's fields in RUN_NAME RUN_KIND RUN_ALPHA RUN_T RUN_SEED RUN_MODE RUN_TEACHER, and
# RUN_DIVERGENCE: a student's divergence when it is not the default kl, else empty.
run_fields() { read -r RUN_NAME RUN_KIND RUN_ALPHA RUN_T RUN_SEED RUN_MODE RUN_TEACHER RUN_DIVERGENCE <<<"$1"; }

# transfer_args PREFIX DIVERGENCE: a student's transfer flags in TRANSFER_ARGS, none for the default transfer
# (kl, every transfer setting at its default). PREFIX: kd- for word_kd's option names, '' for lskd-vision's.
transfer_args() {
    local prefix="$1" divergence="${2:-kl}"
    TRANSFER_ARGS=()
    if [ "$divergence" != kl ]; then TRANSFER_ARGS+=(--kd-divergence "$divergence"); fi
    if [ "$divergence" = jsd ]; then TRANSFER_ARGS+=("--${prefix}jsd-beta" "$JSD_BETA"); fi
    case "$divergence" in skew_*) TRANSFER_ARGS+=("--${prefix}skew" "$SKEW") ;; esac
    if [ -n "$TEACHER_TEMPERATURE" ]; then TRANSFER_ARGS+=("--${prefix}teacher-temperature" "$TEACHER_TEMPERATURE"); fi
    if [ "$LOGIT_STANDARDIZATION" = 1 ]; then TRANSFER_ARGS+=("--${prefix}logit-standardization"); fi
    if [ "${TOPK_TAIL:-0}" = 1 ]; then TRANSFER_ARGS+=(--kd-topk-tail); fi
    return 0
}

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
    local name kind alpha temperature seed mode teacher divergence
    read -r name kind alpha temperature seed mode teacher divergence <<<"$1"
    local args=(--kind "$kind" --alpha "$alpha" --seed "$seed" --metrics "$METRICS_FILE")
    if [ "$temperature" != - ]; then args+=(--temperature "$temperature"); fi
    if [ "$mode" != - ]; then args+=(--kd-mode "$mode"); fi
    if [ "$teacher" != - ]; then args+=(--teacher "$teacher"); fi
    if [ -n "$divergence" ]; then args+=(--divergence "$divergence"); fi
    if [ "$kind" = student ] && [ "$mode" != seq ] && [ -n "${TRANSFER_OPTIONS[${divergence:-kl}]:-}" ]; then
        args+=(--transfer-options "${TRANSFER_OPTIONS[${divergence:-kl}]}")
    fi
    "$PYTHON" -m lskd_grid.runs record "$RUN_DIR/$name" "${args[@]}"
}

# deployed_scores_newer TABLE: the scores of exported models (RUN/bleu-ct2-Q/bleu.json) newer than TABLE.
deployed_scores_newer() { find "$RUN_DIR" -mindepth 3 -maxdepth 3 -path '*/bleu-ct2-*/bleu.json' -newer "$1"; }

# results_stage PAPER METRIC [lskd-results flags...]: the lskd-results table of the grid, rebuilt when a run
# started or finished since, then printed.
results_stage() {
    local table="$RUN_DIR/results.csv"
    if [ -n "${LSKD_STAGE:-}" ] && [ "$LSKD_STAGE" != results ]; then return 0; fi
    if [ -f "$table" ] && [ -n "$(find "$RUN_DIR" -mindepth 2 -maxdepth 2 \( -name "$METRICS_FILE" -o -name run.json \) -newer "$table")$(deployed_scores_newer "$table")" ]; then
        rm -f "$RUN_DIR/results.md" "$table"
    fi
    stage results "$table" "$PYTHON" -m lskd_report.results "$RUN_DIR" --paper "$1" --metric "$2" --out "$RUN_DIR/results" "${@:3}"
    cat "$RUN_DIR/results.md"
    missing_runs
}

# missing_runs: fails naming the planned runs without their metrics file (a Slurm grid's results job runs
# whatever became of the runs before it).
missing_runs() {
    local row missing=()
    for row in "${TEACHERS[@]}" "${STUDENTS[@]}"; do
        run_fields "$row"
        if [ ! -f "$RUN_DIR/$RUN_NAME/$METRICS_FILE" ]; then missing+=("$RUN_NAME"); fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "results: ${#missing[@]} runs failed or did not finish, their cells are empty: ${missing[*]} (logs: $RUN_DIR/logs/<run>.log)" >&2
        return 1
    fi
}

# launch lskd-vision-arguments...: one process, or GPUS processes under torchrun; inside a Slurm job of several
# tasks, one process per task through srun, torch's distributed environment taken from Slurm's.
launch() {
    if [ "${SLURM_NTASKS:-1}" -gt 1 ]; then
        MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)" MASTER_PORT="$(slurm_port)" \
            srun --kill-on-bad-exit=1 bash -c \
            'export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS; exec "$0" "$@"' \
            "$PYTHON" -m lskd_vision.cli "$@"
    elif [ "${GPUS:-1}" -gt 1 ]; then
        "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m lskd_vision.cli "$@"
    else
        "$PYTHON" -m lskd_vision.cli "$@"
    fi
}

# slurm_port: the rendezvous port of this job's processes, the same on every node (from the job id).
slurm_port() { echo $((20000 + SLURM_JOB_ID % 30000)); }

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
        transfer_args "" "$RUN_DIVERGENCE"
        stage "$RUN_NAME" "$RUN_DIR/$RUN_NAME/metrics.json" vision_train "$row" train-student \
            --teacher "$RUN_DIR/$teacher/best.pth" --temperature "$RUN_T" "${VISION_ARGS[@]}" "${STUDENT_ARGS[@]}" \
            "${TRANSFER_ARGS[@]}"
    done
}

# vision_grid METRIC: every lane, JOBS at a time, then the results table against PAPER.
vision_grid() {
    echo "$RECIPE: ${#TEACHERS[@]} teachers, ${#STUDENTS[@]} students (SEEDS=\"$SEEDS\"), run folder $RUN_DIR, $JOBS lane(s) at once"
    run_lanes vision_lane "${TEACHERS[@]}"
    results_stage "$PAPER" "${1:-best.top1}"
}
