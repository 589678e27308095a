#!/usr/bin/env bash
# Re-folder the flat ILSVRC2012 validation images into VAL_DIR/<wnid>/ for torchvision's ImageFolder.
#   data-prep/prepare-imagenet-val.sh VAL_DIR LOC_val_solution.csv
#   data-prep/prepare-imagenet-val.sh VAL_DIR ILSVRC2012_validation_ground_truth.txt map_clsloc.txt
# Extra flags go to the Python entry point: --allow-partial.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 VAL_DIR (LOC_val_solution.csv | ILSVRC2012_validation_ground_truth.txt map_clsloc.txt) [--allow-partial]" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}"
VAL_DIR="$1"
case "$2" in
    *.csv) LABELS=(--solution "$2"); shift 2 ;;
    *)
        if [ $# -lt 3 ]; then
            echo "$0: the devkit ground truth needs map_clsloc.txt as the third argument" >&2
            exit 2
        fi
        LABELS=(--ground-truth "$2" --mapping "$3"); shift 3 ;;
esac
exec "$PYTHON" -m lskd_vision.prepare_imagenet "$VAL_DIR" "${LABELS[@]}" "$@"
