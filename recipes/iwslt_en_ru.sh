#!/usr/bin/env bash
# IWSLT 2014 English->Russian, the paper's Table 5 grid. The release is not public: see --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
nmt_recipe iwslt_en_ru "$@"
