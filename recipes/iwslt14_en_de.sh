#!/usr/bin/env bash
# IWSLT 2014 English->German, the paper's Table 5 grid: LS teachers, word-level KD students. See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
RECIPE=iwslt14_en_de
RECIPE_SUMMARY="IWSLT 2014 En->De: teachers at each ALPHAS, KD students at each TEMPERATURES (paper Table 5, En-De)."
SOURCE_LANG=en TARGET_LANG=de PAPER_TABLE=iwslt-en-de
DATA_STAGE=prepare_iwslt PREPARE_SCRIPT=prepare-iwslt14.sh
nmt_recipe "$@"
