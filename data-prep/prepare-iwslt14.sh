#!/usr/bin/env bash
# IWSLT 2014 German-English (TED) for the paper's En->De runs and fairseq's De->En recipe. See --help.
set -euo pipefail
SCRIPT_NAME=prepare-iwslt14.sh
LANG_PAIR=de-en
PAPER_SOURCE=en
PAPER_TARGET=de
ARCHIVE_NAME=de-en.tgz
# fairseq's mirror of the WIT3 2014-01 archive (the WIT3 links are dead). No sha256 is published for it.
ARCHIVE_URL=http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz
ARCHIVE_SHA256=""
ARCHIVE_HINT="de-en.tgz (IWSLT 2014 de-en release, $ARCHIVE_URL)"
source "$(dirname "${BASH_SOURCE[0]}")/iwslt-common.sh"
