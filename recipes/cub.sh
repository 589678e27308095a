#!/usr/bin/env bash
# CUB-200-2011 alpha × T grid with the paper's settings (§3.3-3.4): ResNet-50 teachers fine-tuned
# from the ImageNet teachers of the same alpha, ImageNet-pretrained students distilled at each T.
#   recipes/cub.sh --data CUB_200_2011/ --imagenet-runs RUNS/imagenet --student-init resnet18.pth [--run-dir DIR] [--gpus N]
# Environment: GPUS, ALPHAS ("0.0 0.1"), TEMPERATURES ("1 2 3 64"), STUDENT_ARCH (resnet18), PAPER (cub-r18).
# Re-running skips every stage whose metrics.json exists and resumes an interrupted one.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
RUN_DIR="runs/cub"
GPUS="${GPUS:-1}"
while [ $# -gt 0 ]; do
    case "$1" in
        --data) DATA="$2"; shift 2 ;;
        --imagenet-runs) IMAGENET_RUNS="$2"; shift 2 ;;
        --student-init) STUDENT_INIT="$2"; shift 2 ;;
        --run-dir) RUN_DIR="$2"; shift 2 ;;
        --gpus) GPUS="$2"; shift 2 ;;
        *) echo "$0: unknown argument $1" >&2; exit 2 ;;
    esac
done
: "${DATA:?--data CUB_200_2011/ is required (see data-prep/prepare-cub.sh)}"
: "${IMAGENET_RUNS:?--imagenet-runs DIR (holding teacher-a0.0/best.pth, teacher-a0.1/best.pth) is required}"
: "${STUDENT_INIT:?--student-init FILE (ImageNet weights of the student, e.g. torchvision resnet18) is required}"
ALPHAS="${ALPHAS:-0.0 0.1}"
TEMPERATURES="${TEMPERATURES:-1 2 3 64}"
STUDENT_ARCH="${STUDENT_ARCH:-resnet18}"

for alpha in $ALPHAS; do
    a="$(alpha_name "$alpha")"
    run_stage "teacher-a$a" train-teacher --dataset cub --data "$DATA" --arch resnet50 --alpha "$alpha" \
        --init "$IMAGENET_RUNS/teacher-a$a/best.pth"
done
for alpha in $ALPHAS; do
    a="$(alpha_name "$alpha")"
    for T in $TEMPERATURES; do
        run_stage "student-a$a-T$T" train-student --dataset cub --data "$DATA" --arch "$STUDENT_ARCH" \
            --init "$STUDENT_INIT" --teacher "$RUN_DIR/teacher-a$a/best.pth" --temperature "$T"
    done
done
summarise "${PAPER:-cub-r18}"
