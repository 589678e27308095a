#!/usr/bin/env bash
# The alpha × T grid on scikit-learn's bundled digits, on CPU in about a minute.
#   recipes/digits.sh [RUN_DIR]
# Environment: ALPHAS ("0.0 0.1"), TEMPERATURES ("1 2 3 64"), EPOCHS (preset), GPUS (1), PAPER (none: no paper table is on digits),
# DIFFUSION_TEMPERATURES ("1 3": the students shown in RUN_DIR/diffusion.png, among those trained),
# JOBS (teachers, each followed by its students, trained at once: the number of cores), OMP_NUM_THREADS (1).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN_DIR="${1:-runs/digits}"
ALPHAS="${ALPHAS:-0.0 0.1}"
TEMPERATURES="${TEMPERATURES:-1 2 3 64}"
EXTRA=(--device cpu ${EPOCHS:+--epochs "$EPOCHS"})

check_jobs "$(cores)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

alpha_lane() {  # ALPHA: its teacher, then the teacher's students
    local a T
    a="$(alpha_name "$1")"
    run_stage "teacher-a$a" train-teacher --dataset digits --alpha "$1" "${EXTRA[@]}"
    for T in $TEMPERATURES; do
        run_stage "student-a$a-T$T" train-student --dataset digits \
            --teacher "$RUN_DIR/teacher-a$a/best.pth" --temperature "$T" "${EXTRA[@]}"
    done
}
run_lanes alpha_lane $ALPHAS

# Paper Fig. 1 on digits: one row per teacher, then each teacher's students at DIFFUSION_TEMPERATURES.
# Names may not contain '=' (NAME=CKPT is split at the first one).
if [ -f "$RUN_DIR/diffusion.json" ]; then
    echo "skip diffusion: $RUN_DIR/diffusion.json exists"
else
    rows=()
    for alpha in $ALPHAS; do
        rows+=("teacher α $(alpha_name "$alpha")=$RUN_DIR/teacher-a$(alpha_name "$alpha")/best.pth")
    done
    for alpha in $ALPHAS; do
        for T in $TEMPERATURES; do
            case " ${DIFFUSION_TEMPERATURES:-1 3} " in
                *" $T "*) rows+=("student T $T, teacher α $(alpha_name "$alpha")=$RUN_DIR/student-a$(alpha_name "$alpha")-T$T/best.pth") ;;
            esac
        done
    done
    echo "run  diffusion (log: $RUN_DIR/logs/diffusion.log)"
    "$PYTHON" -m lskd_vision.cli visualize --dataset digits --device cpu --checkpoints "${rows[@]}" \
        --out "$RUN_DIR" >"$RUN_DIR/logs/diffusion.log" 2>&1 || {
        echo "failed diffusion; last lines of $RUN_DIR/logs/diffusion.log:" >&2
        tail -n 5 "$RUN_DIR/logs/diffusion.log" >&2
        exit 1
    }
fi
summarise "${PAPER:-none}"
