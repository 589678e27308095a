#!/usr/bin/env bash
# ImageNet-1K alpha × T grid with the paper's settings (§3.1-3.2): ResNet-50 teachers from scratch (90 epochs),
# ResNet-18 students by pure KD (200 epochs, 5-epoch warm-up). See --help.
#   recipes/imagenet.sh --data IMAGENET/ [--gpus N] [--seeds "1 2 3"]
# IMAGENET/ holds train/<wnid>/ and val/<wnid>/ (data-prep/prepare-imagenet-val.sh builds val/). The batch size is
# per GPU: the paper's code loads 256 per process.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
settle imagenet "$@"
VISION_ARGS=(--dataset imagenet --data "$DATA" ${EPOCHS:+--epochs "$EPOCHS"})
TEACHER_ARGS=(--arch resnet50) STUDENT_ARGS=(--arch "$STUDENT_ARCH")
vision_grid
