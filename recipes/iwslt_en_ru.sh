#!/usr/bin/env bash
# IWSLT 2014 English->Russian, the paper's Table 5 grid. The release is not public: see --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
RECIPE=iwslt_en_ru
RECIPE_SUMMARY="IWSLT 2014 En->Ru: teachers at each ALPHAS, KD students at each TEMPERATURES (paper Table 5, En-Ru).
The release must be supplied (ORIG, ARCHIVE or data-prep/archives/en-ru.tgz; docs/nmt-data.md)."
SOURCE_LANG=en TARGET_LANG=ru PAPER_TABLE=iwslt-en-ru
DATA_STAGE=prepare_iwslt PREPARE_SCRIPT=prepare-iwslt-en-ru.sh
nmt_recipe "$@"
