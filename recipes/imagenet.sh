#!/usr/bin/env bash
# ImageNet-1K alpha × T grid with the paper's settings (§3.1-3.2): ResNet-50 teachers from scratch
# (90 epochs), ResNet-18 students by pure KD (200 epochs, 5-epoch warm-up).
#   recipes/imagenet.sh --data IMAGENET/ [--run-dir DIR] [--gpus N]
# IMAGENET/ holds train/<wnid>/ and val/<wnid>/ (data-prep/prepare-imagenet-val.sh builds val/).
# Environment: GPUS, ALPHAS ("0.0 0.1"), TEMPERATURES ("1 2 3 64"), STUDENT_ARCH (resnet18),
# PAPER (imagenet-r18). --batch-size is per GPU: the paper's code loads 256 per process.
# Re-running skips every stage whose metrics.json exists and resumes an interrupted one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN_DIR="runs/imagenet"
GPUS="${GPUS:-1}"
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA="$2"; shift 2 ;;
        --run-dir) RUN_DIR="$2"; shift 2 ;;
        --gpus) GPUS="$2"; shift 2 ;;
        *) echo "$0: unknown argument $1" >&2; exit 2 ;;
    esac
done
: "${DATA:?--data IMAGENET/ (with train/ and val/) is required}"
ALPHAS="${ALPHAS:-0.0 0.1}"
TEMPERATURES="${TEMPERATURES:-1 2 3 64}"
STUDENT_ARCH="${STUDENT_ARCH:-resnet18}"

for alpha in $ALPHAS; do
    run_stage "teacher-a$(alpha_name "$alpha")" train-teacher --dataset imagenet --data "$DATA" --arch resnet50 \
        --alpha "$alpha"
done
for alpha in $ALPHAS; do
    a="$(alpha_name "$alpha")"
    for T in $TEMPERATURES; do
        run_stage "student-a$a-T$T" train-student --dataset imagenet --data "$DATA" --arch "$STUDENT_ARCH" \
            --teacher "$RUN_DIR/teacher-a$a/best.pth" --temperature "$T"
    done
done
summarise "${PAPER:-imagenet-r18}"
