#!/usr/bin/env bash
# English->Russian TED, the paper's Table 5 grid: on the IWSLT 2014 release when given, else on the public Qi et al.
# 2018 corpus (downloaded; its numbers are not comparable with the paper's). See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
nmt_recipe iwslt_en_ru "$@"
