# Shared by the vision recipes: launch one stage unless its metrics.json already exists.
# Expects RUN_DIR and GPUS; every stage logs to RUN_DIR/logs/<stage>.log and resumes from its
# own checkpoint.pth when it was interrupted.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$REPO_ROOT/.venv/bin/python" ] && echo "$REPO_ROOT/.venv/bin/python" || echo python3)}"

alpha_name() { printf '%.1f' "$1"; }

launch() {
    if [ "${GPUS:-1}" -gt 1 ]; then
        "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m lskd_vision.cli "$@"
    else
        "$PYTHON" -m lskd_vision.cli "$@"
    fi
}

# run_stage NAME lskd-vision-arguments... (without --out)
run_stage() {
    local name="$1"
    shift
    if [ -f "$RUN_DIR/$name/metrics.json" ]; then
        echo "skip $name: $RUN_DIR/$name/metrics.json exists"
        return 0
    fi
    mkdir -p "$RUN_DIR/logs"
    echo "run  $name (log: $RUN_DIR/logs/$name.log)"
    launch "$@" --out "$RUN_DIR/$name" --resume >"$RUN_DIR/logs/$name.log" 2>&1 || {
        echo "failed $name; last lines of $RUN_DIR/logs/$name.log:" >&2
        tail -n 5 "$RUN_DIR/logs/$name.log" >&2
        return 1
    }
}

# The results table is a separate command; the grid is complete without it.
summarise() {
    if command -v lskd-results >/dev/null 2>&1; then
        lskd-results "$RUN_DIR" --paper "$1" --metric best.top1 --out "$RUN_DIR/results"
    else
        echo "lskd-results not installed; grid finished in $RUN_DIR"
    fi
}
