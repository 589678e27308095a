#!/usr/bin/env bash
# IWSLT 2014 English->German, the paper's Table 5 grid: LS teachers, word- or sequence-level KD students. See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
nmt_recipe iwslt14_en_de "$@"
