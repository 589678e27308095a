#!/usr/bin/env bash
# IWSLT 2014 German->English (fairseq's usual direction; the paper has no De->En table). See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
nmt_recipe iwslt14_de_en "$@"
