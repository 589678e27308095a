#!/usr/bin/env bash
# CUB-200-2011 alpha × T grid with the paper's settings (§3.3-3.4): ResNet-50 teachers fine-tuned from the
# ImageNet teachers of the same alpha and seed, ImageNet-pretrained students distilled at each T. See --help.
#   recipes/cub.sh --data CUB_200_2011/ --imagenet-runs RUNS/imagenet --student-init resnet18.pth [--seeds "1 2 3"]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
settle cub "$@"
VISION_ARGS=(--dataset cub --data "$DATA" ${EPOCHS:+--epochs "$EPOCHS"})
TEACHER_ARGS=(--arch resnet50) STUDENT_ARGS=(--arch "$STUDENT_ARCH" --init "$STUDENT_INIT")
TEACHER_INIT_DIR="$IMAGENET_RUNS"
vision_grid
