#!/usr/bin/env bash
# IWSLT 2014 German->English (fairseq's usual direction; the paper has no De->En table). See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
RECIPE=iwslt14_de_en
RECIPE_SUMMARY="IWSLT 2014 De->En: the paper's grid in fairseq's usual direction (no published numbers to compare)."
SOURCE_LANG=de TARGET_LANG=en PAPER_TABLE=none
DATA_STAGE=prepare_iwslt PREPARE_SCRIPT=prepare-iwslt14.sh
nmt_recipe "$@"
