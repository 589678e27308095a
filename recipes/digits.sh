#!/usr/bin/env bash
# The alpha x T grid on scikit-learn's bundled digits, on CPU in about a minute, and each seed's Fig. 1-style
# diffusion figure. See --help.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
settle digits "$@"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
VISION_ARGS=(--dataset digits --device cpu ${EPOCHS:+--epochs "$EPOCHS"})
TEACHER_ARGS=() STUDENT_ARGS=()

# visualize_seed SEED [DIVERGENCE]: paper Fig. 1 on digits for one seed: one row per teacher, then each teacher's
# students of DIVERGENCE (default kl) at DIFFUSION_TEMPERATURES, into diffusion-sS (kl) or diffusion-D-sS. Names
# may not contain '=' (NAME=CKPT is split at the first one).
visualize_seed() {
    local row rows=() divergence="${2:-kl}" suffix="" name
    if [ "$divergence" != kl ]; then suffix="-$divergence"; fi
    for row in "${TEACHERS[@]}" "${STUDENTS[@]}"; do
        run_fields "$row"
        [ "$RUN_SEED" = "$1" ] || continue
        if [ "$RUN_KIND" = teacher ]; then
            rows+=("teacher α $RUN_ALPHA=$RUN_DIR/$RUN_NAME/best.pth")
        elif [ "${RUN_DIVERGENCE:-kl}" = "$divergence" ] && [[ " $DIFFUSION_TEMPERATURES " == *" $RUN_T "* ]]; then
            name="student T $RUN_T"
            if [ -n "$suffix" ]; then name+=" ($divergence)"; fi
            rows+=("$name, teacher α $RUN_ALPHA=$RUN_DIR/$RUN_NAME/best.pth")
        fi
    done
    "$PYTHON" -m lskd_vision.cli visualize --dataset digits --device cpu --checkpoints "${rows[@]}" \
        --out "$RUN_DIR/diffusion$suffix-s$1"
}

echo "$RECIPE: ${#TEACHERS[@]} teachers, ${#STUDENTS[@]} students (SEEDS=\"$SEEDS\"), run folder $RUN_DIR, $JOBS lane(s) at once"
run_lanes vision_lane "${TEACHERS[@]}"
for seed in $SEEDS; do
    for divergence in $DIVERGENCES; do
        suffix=""
        if [ "$divergence" != kl ]; then suffix="-$divergence"; fi
        stage "diffusion$suffix-s$seed" "$RUN_DIR/diffusion$suffix-s$seed/diffusion.json" visualize_seed "$seed" "$divergence"
    done
done
results_stage "$PAPER" best.top1
