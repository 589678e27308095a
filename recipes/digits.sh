#!/usr/bin/env bash
# The alpha × T grid on scikit-learn's bundled digits, on CPU in about a minute.
#   recipes/digits.sh [RUN_DIR]
# Environment: ALPHAS ("0.0 0.1"), TEMPERATURES ("1 2 3 64"), EPOCHS (preset), GPUS (1), PAPER (cub-r18).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN_DIR="${1:-runs/digits}"
ALPHAS="${ALPHAS:-0.0 0.1}"
TEMPERATURES="${TEMPERATURES:-1 2 3 64}"
EXTRA=(--device cpu ${EPOCHS:+--epochs "$EPOCHS"})

for alpha in $ALPHAS; do
    run_stage "teacher-a$(alpha_name "$alpha")" train-teacher --dataset digits --alpha "$alpha" "${EXTRA[@]}"
done
for alpha in $ALPHAS; do
    teacher="$RUN_DIR/teacher-a$(alpha_name "$alpha")/best.pth"
    for T in $TEMPERATURES; do
        run_stage "student-a$(alpha_name "$alpha")-T$T" train-student --dataset digits \
            --teacher "$teacher" --temperature "$T" "${EXTRA[@]}"
    done
done
summarise "${PAPER:-cub-r18}"
