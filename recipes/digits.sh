#!/usr/bin/env bash
# The alpha x T grid on scikit-learn's bundled digits, on CPU in about a minute, and each seed's Fig. 1-style
# diffusion figure. See --help.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
settle digits "$@"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
VISION_ARGS=(--dataset digits --device cpu ${EPOCHS:+--epochs "$EPOCHS"})
TEACHER_ARGS=() STUDENT_ARGS=()

# visualize_seed SEED: paper Fig. 1 on digits for one seed: one row per teacher, then each teacher's students at
# DIFFUSION_TEMPERATURES. Names may not contain '=' (NAME=CKPT is split at the first one).
visualize_seed() {
    local row rows=()
    for row in "${TEACHERS[@]}" "${STUDENTS[@]}"; do
        run_fields "$row"
        [ "$RUN_SEED" = "$1" ] || continue
        if [ "$RUN_KIND" = teacher ]; then
            rows+=("teacher α $RUN_ALPHA=$RUN_DIR/$RUN_NAME/best.pth")
        elif [[ " $DIFFUSION_TEMPERATURES " == *" $RUN_T "* ]]; then
            rows+=("student T $RUN_T, teacher α $RUN_ALPHA=$RUN_DIR/$RUN_NAME/best.pth")
        fi
    done
    "$PYTHON" -m lskd_vision.cli visualize --dataset digits --device cpu --checkpoints "${rows[@]}" \
        --out "$RUN_DIR/diffusion-s$1"
}

echo "$RECIPE: ${#TEACHERS[@]} teachers, ${#STUDENTS[@]} students (SEEDS=\"$SEEDS\"), run folder $RUN_DIR, $JOBS lane(s) at once"
run_lanes vision_lane "${TEACHERS[@]}"
for seed in $SEEDS; do
    stage "diffusion-s$seed" "$RUN_DIR/diffusion-s$seed/diffusion.json" visualize_seed "$seed"
done
results_stage "$PAPER" best.top1
