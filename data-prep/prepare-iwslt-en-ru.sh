#!/usr/bin/env bash
# English-Russian TED for the paper's En->Ru runs: the IWSLT 2014 release (no public copy is known: the user
# supplies it), or the public multi-way TED corpus of Qi et al. 2018 (--source qi2018, downloaded). See --help.
set -euo pipefail
SCRIPT_NAME=prepare-iwslt-en-ru.sh
LANG_PAIR=en-ru
PAPER_SOURCE=en
PAPER_TARGET=ru
ARCHIVE_NAME=en-ru.tgz
ARCHIVE_URL=""
ARCHIVE_SHA256=""
ARCHIVE_HINT="en-ru.tgz (IWSLT 2014 en-ru release, WIT3 2014-01 texts/en/ru/en-ru.tgz, holding train.tags.en-ru.{en,ru} and IWSLT14.TED.*.en-ru.*.xml)"
SOURCES="wit3 qi2018"
QI2018_LANGS="en ru"
source "$(dirname "${BASH_SOURCE[0]}")/iwslt-common.sh"
