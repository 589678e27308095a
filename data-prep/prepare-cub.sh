#!/usr/bin/env bash
# Put CUB-200-2011 under DEST and check it (5,994 train / 5,794 test images, 200 classes).
#   data-prep/prepare-cub.sh DEST                    # use DEST/CUB_200_2011.tgz, or download it
#   data-prep/prepare-cub.sh DEST CUB_200_2011.tgz   # extract a given archive (md5 checked)
#   data-prep/prepare-cub.sh DEST path/CUB_200_2011  # check an extracted folder in place
# Extra flags go to the Python entry point: --no-download, --md5 HASH.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 DEST [ARCHIVE_OR_FOLDER] [--no-download]" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}"
DEST="$1"
shift
SOURCE=()
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    SOURCE=(--source "$1")
    shift
fi
exec "$PYTHON" -m lskd_vision.prepare_cub --dest "$DEST" "${SOURCE[@]}" "$@"
