# Shared by prepare-iwslt14.sh and prepare-iwslt-en-ru.sh: argument checks, locating or downloading the
# release archive, checksum verification, then the Python preparation (lskd_nmt.prepare_iwslt).
# The sourcing script sets: SCRIPT_NAME, LANG_PAIR (release order, e.g. de-en), PAPER_SOURCE, PAPER_TARGET,
# ARCHIVE_NAME, ARCHIVE_URL (empty when no public copy is known), ARCHIVE_SHA256 (empty when unknown),
# ARCHIVE_HINT (where the archive comes from, for the missing-archive message); for a pair that Qi et al.'s
# multi-way TED corpus also holds, SOURCES="wit3 qi2018" and QI2018_LANGS (its two column names).

DATA_PREP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$DATA_PREP_DIR")"
SOURCES="${SOURCES:-wit3}"
DEFAULT_ARCHIVE="$DATA_PREP_DIR/archives/$ARCHIVE_NAME"
QI2018_URL=http://phontron.com/data/ted_talks.tar.gz  # the authors' README, neulab/word-embeddings-for-nmt

fail() { echo "$SCRIPT_NAME: error: $*" >&2; exit 2; }

usage() {
    cat <<USAGE
Usage: bash data-prep/$SCRIPT_NAME --profile paper|modern --out DIR [--orig FOLDER | --archive FILE]
       [--vocab-size N] [--direction both|$PAPER_SOURCE-$PAPER_TARGET|$PAPER_TARGET-$PAPER_SOURCE] [--max-lines N]
       [--sha256 HEX] [--workers N] [--test-sets "NAME ..."] [--source ${SOURCES// /|}]

Prepares IWSLT 2014 $LANG_PAIR: DIR/{train,valid,test}.{$PAPER_SOURCE,$PAPER_TARGET} (prepared text),
DIR/spm.model (joint sentencepiece), DIR/bin/ (fairseq-preprocess --joined-dictionary; serves both directions).

  --profile      paper: Moses tokenisation, clean (ratio 1.5, 1-175 tokens), lowercase, BPE-style spm
                 modern: raw cased text, unigram spm
  --out          output folder, new or empty
  --orig         extracted release folder (train.tags.$LANG_PAIR.*, IWSLT14.TED*.xml)
  --archive      release archive ($ARCHIVE_NAME); default: $DEFAULT_ARCHIVE
                 ${ARCHIVE_URL:+(downloaded from $ARCHIVE_URL when absent)}
  --vocab-size   joint subword vocabulary size (default 10000; smaller on tiny data)
  --direction    pair naming of bin/ files; every value gives a bin/ that trains both directions
                 (default both = the paper's $PAPER_SOURCE-$PAPER_TARGET naming)
  --max-lines    keep only the first N train and test lines (smoke tests, CPU tiny runs)
  --sha256       expected sha256 of the archive (checked before anything is written)
  --workers      threads for sentencepiece and fairseq-preprocess (default 2)
  --test-sets    release test sets that form the test split, in this order, space- or comma-separated
                 (default: all of TED.dev2010 TEDX.dev2012 TED.tst2010 TED.tst2011 TED.tst2012 the release has)
USAGE
    if [[ "$SOURCES" == *qi2018* ]]; then cat <<USAGE
  --source       wit3: the IWSLT 2014 release above (the paper's data; its numbers compare with the paper's)
                 qi2018: the multi-way TED corpus of Qi et al. (NAACL 2018), ted_talks.tar.gz with
                 all_talks_{train,dev,test}.tsv, its own train/dev/test split; --archive FILE or
                 data-prep/archives/ted_talks.tar.gz, downloaded from $QI2018_URL when absent
                 (default: wit3 when --orig or --archive is given or $DEFAULT_ARCHIVE exists, else qi2018)
USAGE
    fi
}

PROFILE="" OUT="" ORIG="" ARCHIVE="" VOCAB_SIZE=10000 DIRECTION=both MAX_LINES="" SHA256="" WORKERS=2 TEST_SETS="" SOURCE=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --profile|--out|--orig|--archive|--vocab-size|--direction|--max-lines|--sha256|--workers|--test-sets|--source)
            [[ $# -ge 2 ]] || fail "$1 needs a value"
            case "$1" in
                --profile) PROFILE="$2" ;; --out) OUT="$2" ;; --orig) ORIG="$2" ;; --archive) ARCHIVE="$2" ;;
                --vocab-size) VOCAB_SIZE="$2" ;; --direction) DIRECTION="$2" ;; --max-lines) MAX_LINES="$2" ;;
                --sha256) SHA256="$2" ;; --workers) WORKERS="$2" ;; --test-sets) TEST_SETS="${2//,/ }" ;;
                --source) SOURCE="$2" ;;
            esac
            shift 2 ;;
        *) fail "unknown argument '$1' (see --help)" ;;
    esac
done

[[ "$PROFILE" == paper || "$PROFILE" == modern ]] || fail "--profile '${PROFILE}': expected paper or modern"
[[ -n "$OUT" ]] || fail "--out DIR is required"
# The smallest vocabulary and line count are lskd_nmt.prepare_iwslt's to check (lskd_nmt.nmt_profiles).
[[ "$VOCAB_SIZE" =~ ^[0-9]+$ ]] || fail "--vocab-size '$VOCAB_SIZE': expected an integer"
[[ -z "$MAX_LINES" || "$MAX_LINES" =~ ^[0-9]+$ ]] || fail "--max-lines '$MAX_LINES': expected an integer"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || fail "--workers '$WORKERS': expected a positive integer"
case "$DIRECTION" in
    both|"$PAPER_SOURCE-$PAPER_TARGET") SOURCE_LANG="$PAPER_SOURCE" TARGET_LANG="$PAPER_TARGET" ;;
    "$PAPER_TARGET-$PAPER_SOURCE") SOURCE_LANG="$PAPER_TARGET" TARGET_LANG="$PAPER_SOURCE" ;;
    *) fail "--direction '$DIRECTION': expected both, $PAPER_SOURCE-$PAPER_TARGET or $PAPER_TARGET-$PAPER_SOURCE" ;;
esac
[[ -z "$SHA256" || "$SHA256" =~ ^[0-9a-fA-F]{64}$ ]] || fail "--sha256 '$SHA256': expected 64 hex digits"
[[ -z "$ORIG" || -z "$ARCHIVE" ]] || fail "give --orig or --archive, not both"
[[ -z "$ORIG" || -z "$SHA256" ]] || fail "--sha256 checks an archive; it cannot check --orig $ORIG"
if [[ -d "$OUT" && -n "$(ls -A "$OUT")" ]]; then fail "--out $OUT: folder is not empty (expected a new or empty folder)"; fi
if [[ -z "$SOURCE" ]]; then
    SOURCE=wit3
    if [[ "$SOURCES" == *qi2018* && -z "$ORIG$ARCHIVE" && ! -f "$DEFAULT_ARCHIVE" ]]; then SOURCE=qi2018; fi
fi
[[ " $SOURCES " == *" $SOURCE "* ]] || fail "--source '$SOURCE': expected ${SOURCES// / or }"
if [[ "$SOURCE" == qi2018 ]]; then
    ARCHIVE_NAME=ted_talks.tar.gz ARCHIVE_URL="$QI2018_URL" ARCHIVE_SHA256=""
    ARCHIVE_HINT="ted_talks.tar.gz (Qi et al. 2018 multi-way TED corpus, $QI2018_URL)"
    DEFAULT_ARCHIVE="$DATA_PREP_DIR/archives/$ARCHIVE_NAME"
fi

PYTHON="${LSKD_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x "$REPO_DIR/.venv/bin/python" ]]; then PYTHON="$REPO_DIR/.venv/bin/python"; else PYTHON=python3; fi
fi

if [[ -n "$ORIG" ]]; then
    [[ -d "$ORIG" ]] || fail "--orig $ORIG: no such folder (expected the extracted $LANG_PAIR release)"
    RELEASE="$ORIG"
else
    RELEASE="${ARCHIVE:-$DEFAULT_ARCHIVE}"
    if [[ ! -f "$RELEASE" && -z "$ARCHIVE" && -n "$ARCHIVE_URL" ]]; then
        mkdir -p "$(dirname "$RELEASE")"
        echo "$SCRIPT_NAME: downloading $ARCHIVE_URL -> $RELEASE" >&2
        curl -fsSL --retry 2 -o "$RELEASE.part" "$ARCHIVE_URL" \
            || { rm -f "$RELEASE.part"; fail "download of $ARCHIVE_URL failed; put $ARCHIVE_NAME at $RELEASE or pass --archive FILE"; }
        if [[ "$SOURCE" == qi2018 ]]; then  # read to its end: only a complete corpus with both columns is published
            "$PYTHON" -m lskd_nmt.ted_multi "$RELEASE.part" --langs $QI2018_LANGS >&2 || { rm -f "$RELEASE.part"; exit 2; }
        fi
        mv "$RELEASE.part" "$RELEASE"
    fi
    [[ -f "$RELEASE" ]] || { echo "$SCRIPT_NAME: missing $RELEASE: put $ARCHIVE_HINT there, or pass --archive FILE or --orig FOLDER" >&2; exit 1; }
    EXPECTED_SHA256="${SHA256:-$ARCHIVE_SHA256}"
    if [[ -n "$EXPECTED_SHA256" ]]; then
        ACTUAL_SHA256="$(sha256sum "$RELEASE" | cut -d' ' -f1)"
        [[ "${ACTUAL_SHA256,,}" == "${EXPECTED_SHA256,,}" ]] \
            || fail "$RELEASE: sha256 $ACTUAL_SHA256, expected $EXPECTED_SHA256"
    else
        echo "$SCRIPT_NAME: note: no published sha256 for $ARCHIVE_NAME; the archive's sha256 is recorded in $OUT/bin/lskd-prep.json" >&2
    fi
fi

PREP_ARGS=(--release "$RELEASE" --source "$SOURCE" --out "$OUT" --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG"
           --profile "$PROFILE" --vocab-size "$VOCAB_SIZE" --workers "$WORKERS")
[[ -z "$MAX_LINES" ]] || PREP_ARGS+=(--max-lines "$MAX_LINES")
# shellcheck disable=SC2206  # one argument per named set
[[ -z "$TEST_SETS" ]] || PREP_ARGS+=(--test-sets $TEST_SETS)
"$PYTHON" -m lskd_nmt.prepare_iwslt "${PREP_ARGS[@]}"
