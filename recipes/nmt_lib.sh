# The NMT α × T grid (paper §2.6, hyper-parameters §3.6) on fairseq with the lskd_fairseq plugin, shared by
# iwslt14_en_de.sh, iwslt14_de_en.sh, iwslt_en_ru.sh and toy_translation.sh.
#
# A recipe sources this file, sets RECIPE (name, default run folder runs/$RECIPE), RECIPE_SUMMARY (for
# --help), SOURCE_LANG, TARGET_LANG, PAPER_TABLE (lskd-results table id or none) and DATA_STAGE, then calls
# `nmt_recipe "$@"`. DATA_STAGE names a function that writes a data folder holding bin/ to the new folder it
# is given, and settle_$DATA_STAGE sets the defaults of its variables and checks them. A recipe may also set
# EVAL_ARGS (extra lskd-evaluate flags) and DATA_HELP (help lines), and define profiles (profile_NAME).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TRAINED_MARKER=training-finished
EVAL_ARGS=()
DATA_HELP=""

nmt_usage() {
    cat <<USAGE
Usage: bash recipes/$RECIPE.sh [--tiny] [--help]
$RECIPE_SUMMARY

Stages (each skipped when its output exists; logs in RUN_DIR/logs/<stage>.log):
  data                   prepared data in DATA_DIR (binarised in DATA_DIR/bin)
  teacher-aA             label_smoothed_teacher with --label-smoothing A, for A in ALPHAS
  eval-teacher-aA        lskd-evaluate of its checkpoint_best.pt on EVAL_SUBSET -> RUN_DIR/teacher-aA/bleu.json
  cache-aA               teacher top-TOPK logits on train and valid -> RUN_DIR/teacher-aA/cache-topTOPK/
  student-aA-TT          word_kd from that cache at temperature T, for T in TEMPERATURES
  eval-student-aA-TT     -> RUN_DIR/student-aA-TT/bleu.json
  results                lskd-results -> RUN_DIR/results.{md,csv} (paper table: $PAPER_TABLE)

Environment (default of the paper profile; [tiny] where the tiny profile differs):
  PROFILE          one of: $(list_profiles) (default $PROFILE); tiny (same as --tiny) is a small CPU
                   model with few updates, for smoke tests
  RUN_DIR          run folder (runs/$RECIPE; [tiny] runs/$RECIPE-tiny)
  DATA_DIR         prepared data (RUN_DIR/data); one DATA_DIR serves both directions of a pair
$(data_help)
  ARCH             fairseq --arch (transformer_iwslt_de_en; [tiny] transformer)
  MODEL_ARGS       extra model flags (--share-all-embeddings; [tiny] 1+1 layers, 64-d, FFN 128, 2 heads)
  MAX_UPDATE       updates per model (300000; [tiny] 40)
  MAX_EPOCH        epochs per model, 0 = no limit (0)
  PATIENCE         teacher early stopping, validations without a better valid loss (20; [tiny] -1 = off)
  STUDENT_PATIENCE student early stopping (100; [tiny] -1)
  MAX_TOKENS       tokens per batch and GPU (4096; [tiny] 2048)
  UPDATE_FREQ      batches per update (1)
  LR               peak learning rate, inverse_sqrt schedule (5e-4; [tiny] 2e-3)
  WARMUP           warm-up updates from WARMUP_INIT_LR (4000; [tiny] 20)
  WARMUP_INIT_LR   (1e-7)
  DROPOUT          (0.3; [tiny] 0.1)
  WEIGHT_DECAY     (0.0)
  CLIP_NORM        (0.0 = no clipping)
  SEED             (1)
  ALPHAS           teacher label smoothing, one decimal each ("0.0 0.1")
  TEMPERATURES     student temperatures ("1 2 3 64")
  TOPK             teacher entries cached per token (4)
  KD_WEIGHT        weight of the KD term; 1 - KD_WEIGHT goes to the hard term (0.9)
  STUDENT_LS       label smoothing of the students' hard term (0.1)
  BEAM             beam size of lskd-evaluate (5)
  EVAL_SUBSET      split that bleu.json scores (test; [tiny] valid, a few dozen sentences: an
                   untrained model decodes every test sentence to the length limit)
  BLEU_METRIC      key of bleu.json in the results table (tokenized_bleu.score for TEXT_PROFILE=paper,
                   else sacrebleu.score)
  GPUS             GPUs per training run, fairseq --distributed-world-size; 0 = CPU (1; [tiny] 0)
  OMP_NUM_THREADS  CPU threads per process when GPUS=0 (1: small models on shared cores stall with more)
  JOBS             teachers (each followed by its students) trained at once (GPUS=0: the number of
                   cores; else 1, since lanes would share the GPUs)
  FP16             1 = --fp16 training and half-precision teacher dumps (0; needs GPUS >= 1)
  LOG_INTERVAL     fairseq --log-interval (100; [tiny] 10)
  TRAIN_ARGS       extra fairseq-train flags for every model ("")
  PYTHON           interpreter with lskd and fairseq (REPO/.venv/bin/python when it exists)

Re-running resumes: finished stages are skipped and an interrupted training continues from its
checkpoint_last.pt. Delete RUN_DIR/<run>/$TRAINED_MARKER to train a finished model further.
USAGE
}

data_help() {
    if [ "$DATA_STAGE" = prepare_iwslt ]; then
        cat <<DATA
  ORIG             extracted release folder (data-prep --orig); or
  ARCHIVE          release .tgz (data-prep --archive); neither: data-prep/archives/, see docs/nmt-data.md
  TEXT_PROFILE     data-prep --profile: paper (Moses, lowercased) | modern (raw text) (paper)
  VOCAB_SIZE       joint sentencepiece vocabulary (10000; [tiny] 500)
  MAX_LINES        keep the first N train and test lines ("" = all; [tiny] 700)
DATA
    else
        printf '%s\n' "$DATA_HELP"
    fi
}

die() {
    echo "$RECIPE: $*" >&2
    exit 2
}

profile_paper() {
    : "${ARCH:=transformer_iwslt_de_en}" "${MODEL_ARGS:=--share-all-embeddings}"
    : "${MAX_UPDATE:=300000}" "${PATIENCE:=20}" "${STUDENT_PATIENCE:=100}" "${MAX_TOKENS:=4096}"
    : "${LR:=5e-4}" "${WARMUP:=4000}" "${DROPOUT:=0.3}" "${GPUS:=1}" "${LOG_INTERVAL:=100}"
    : "${VOCAB_SIZE:=10000}" "${MAX_LINES:=}"
    : "${RUN_DIR:=runs/$RECIPE}"
}

profile_tiny() {
    : "${ARCH:=transformer}"
    : "${MODEL_ARGS:=--share-all-embeddings --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 64
        --decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128
        --encoder-attention-heads 2 --decoder-attention-heads 2}"
    : "${MAX_UPDATE:=40}" "${PATIENCE:=-1}" "${STUDENT_PATIENCE:=-1}" "${MAX_TOKENS:=2048}"
    : "${LR:=2e-3}" "${WARMUP:=20}" "${DROPOUT:=0.1}" "${GPUS:=0}" "${LOG_INTERVAL:=10}"
    : "${VOCAB_SIZE:=500}" "${MAX_LINES:=700}" "${EVAL_SUBSET:=valid}"
    : "${RUN_DIR:=runs/$RECIPE-tiny}"
}

# Settings every profile shares (the paper's unless a profile or the environment says otherwise).
common_defaults() {
    : "${MAX_EPOCH:=0}" "${UPDATE_FREQ:=1}" "${WARMUP_INIT_LR:=1e-7}" "${WEIGHT_DECAY:=0.0}" "${CLIP_NORM:=0.0}"
    : "${SEED:=1}" "${ALPHAS:=0.0 0.1}" "${TEMPERATURES:=1 2 3 64}" "${TOPK:=4}" "${KD_WEIGHT:=0.9}"
    : "${STUDENT_LS:=0.1}" "${BEAM:=5}" "${EVAL_SUBSET:=test}" "${FP16:=0}" "${TRAIN_ARGS:=}"
    : "${DATA_DIR:=$RUN_DIR/data}" "${BLEU_METRIC:=sacrebleu.score}"
}

parse_recipe_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            -h|--help) nmt_usage; exit 0 ;;
            --tiny) PROFILE=tiny ;;
            *) die "unknown argument '$1' (expected --tiny or --help; settings are environment variables)" ;;
        esac
        shift
    done
}

# expect_int NAME MIN: the variable NAME holds an integer >= MIN.
expect_int() {
    local value="${!1}"
    [[ "$value" =~ ^-?[0-9]+$ ]] && [ "$value" -ge "$2" ] || die "$1 '$value': expected an integer >= $2"
}

# expect_number NAME LOW HIGH: the variable NAME holds a decimal number (5e-4 allowed) in [LOW, HIGH].
expect_number() {
    local value="${!1}"
    [[ "$value" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] && awk -v v="$value" -v lo="$2" -v hi="$3" \
        'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + 0) }' || die "$1 '$value': expected a number in [$2, $3]"
}

check_grid() {
    [ -n "$ALPHAS" ] || die "ALPHAS is empty: expected teacher label smoothing values such as \"0.0 0.1\""
    [ -n "$TEMPERATURES" ] || die "TEMPERATURES is empty: expected temperatures such as \"1 2 3 64\""
    local alpha temperature
    for alpha in $ALPHAS; do
        [[ "$alpha" =~ ^0(\.[0-9])?$ ]] \
            || die "ALPHAS value '$alpha': expected a number in [0, 1) with at most one decimal (runs are named teacher-a0.1)"
    done
    for temperature in $TEMPERATURES; do
        [[ "$temperature" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v t="$temperature" 'BEGIN { exit !(t > 0) }' \
            || die "TEMPERATURES value '$temperature': expected a positive number such as 2 or 1.5"
    done
}

list_profiles() { declare -F | awk '$3 ~ /^profile_/ { sub("profile_", "", $3); print $3 }' | paste -sd ' '; }

check_profile() {
    declare -F "profile_$PROFILE" >/dev/null || die "PROFILE '$PROFILE': expected one of: $(list_profiles)"
}

check_settings() {
    check_grid
    local name
    for name in MAX_UPDATE MAX_TOKENS UPDATE_FREQ WARMUP TOPK BEAM LOG_INTERVAL; do expect_int "$name" 1; done
    for name in MAX_EPOCH SEED GPUS; do expect_int "$name" 0; done
    for name in PATIENCE STUDENT_PATIENCE; do expect_int "$name" -1; done
    for name in LR WARMUP_INIT_LR WEIGHT_DECAY CLIP_NORM; do expect_number "$name" 0 1e9; done
    for name in DROPOUT STUDENT_LS; do expect_number "$name" 0 0.99; done
    expect_number KD_WEIGHT 0 1
    [[ "$FP16" =~ ^[01]$ ]] || die "FP16 '$FP16': expected 0 or 1"
    [ "$FP16" = 0 ] || [ "$GPUS" -ge 1 ] || die "FP16=1 with GPUS=0: fp16 needs a GPU (set GPUS >= 1 or FP16=0)"
    [[ "$EVAL_SUBSET" =~ ^(test|valid)$ ]] || die "EVAL_SUBSET '$EVAL_SUBSET': expected test or valid"
    [[ "$BLEU_METRIC" =~ ^(sacrebleu|tokenized_bleu)\.score$ ]] \
        || die "BLEU_METRIC '$BLEU_METRIC': expected sacrebleu.score or tokenized_bleu.score"
    if [ -d "$DATA_DIR" ] && [ ! -d "$DATA_DIR/bin" ] && [ -n "$(ls -A "$DATA_DIR")" ]; then
        die "DATA_DIR $DATA_DIR: exists without bin/ (expected a data folder written by a recipe, or none)"
    fi
}

# The IWSLT data settings; the BLEU that matches the paper's follows the text profile (docs/nmt-data.md).
settle_prepare_iwslt() {
    : "${ORIG:=}" "${ARCHIVE:=}" "${TEXT_PROFILE:=paper}"
    [[ "$TEXT_PROFILE" =~ ^(paper|modern)$ ]] || die "TEXT_PROFILE '$TEXT_PROFILE': expected paper or modern"
    if [ "$TEXT_PROFILE" = paper ]; then : "${BLEU_METRIC:=tokenized_bleu.score}"; fi
    [ -z "$ORIG" ] || [ -z "$ARCHIVE" ] || die "ORIG and ARCHIVE are both set: expected one release source"
    [ -z "$ORIG" ] || [ -d "$ORIG" ] || die "ORIG '$ORIG': no such folder (expected the extracted IWSLT release)"
    [ -z "$ARCHIVE" ] || [ -f "$ARCHIVE" ] || die "ARCHIVE '$ARCHIVE': no such file (expected the IWSLT release .tgz)"
    expect_int VOCAB_SIZE 8
    [ -z "$MAX_LINES" ] || expect_int MAX_LINES 23
}

find_plugin_dir() {
    PLUGIN_DIR="$("$PYTHON" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("lskd_fairseq").origin))' 2>/dev/null)" \
        || die "PYTHON '$PYTHON': cannot import lskd_fairseq (expected the project's environment: run make setup)"
}

# DATA_STAGE for IWSLT: data-prep/$PREPARE_SCRIPT with the recipe's text profile, vocabulary and release.
prepare_iwslt() {
    local out="$1" release=() lines=()
    if [ -n "$ORIG" ]; then release=(--orig "$ORIG"); fi
    if [ -n "$ARCHIVE" ]; then release=(--archive "$ARCHIVE"); fi
    if [ -n "$MAX_LINES" ]; then lines=(--max-lines "$MAX_LINES"); fi
    LSKD_PYTHON="$PYTHON" bash "$REPO_ROOT/data-prep/$PREPARE_SCRIPT" --profile "$TEXT_PROFILE" --out "$out" \
        --vocab-size "$VOCAB_SIZE" "${lines[@]}" "${release[@]}"
}

# Data is written to DATA_DIR.partial and moved into place, so a half-prepared folder is never mistaken for data.
build_data() {
    rm -rf "$DATA_DIR.partial"
    mkdir -p "$(dirname "$DATA_DIR")"
    "$DATA_STAGE" "$DATA_DIR.partial"
    mv -T "$DATA_DIR.partial" "$DATA_DIR"
}

# train_model RUN PATIENCE fairseq-args...: fairseq-train into RUN/checkpoints (resuming from its
# checkpoint_last.pt), then the marker that says the model is finished.
train_model() {
    local run="$1" patience="$2"
    shift 2
    local model_args=() extra_args=() device_args=()
    read -r -a model_args <<<"${MODEL_ARGS//$'\n'/ }"
    read -r -a extra_args <<<"${TRAIN_ARGS//$'\n'/ }"
    if [ "$GPUS" -gt 1 ]; then device_args+=(--distributed-world-size "$GPUS"); fi
    if [ "$FP16" = 1 ]; then device_args+=(--fp16); fi
    "$PYTHON" -m fairseq_cli.train "$DATA_BIN" --user-dir "$PLUGIN_DIR" \
        --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" \
        --arch "$ARCH" "${model_args[@]}" --dropout "$DROPOUT" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm "$CLIP_NORM" --weight-decay "$WEIGHT_DECAY" \
        --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --warmup-init-lr "$WARMUP_INIT_LR" \
        --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --required-batch-size-multiple 1 \
        --max-update "$MAX_UPDATE" --max-epoch "$MAX_EPOCH" --patience "$patience" --seed "$SEED" \
        --save-dir "$run/checkpoints" --no-epoch-checkpoints \
        --log-format simple --log-interval "$LOG_INTERVAL" --no-progress-bar \
        "${device_args[@]}" "$@" "${extra_args[@]}"
    touch "$run/$TRAINED_MARKER"
}

train_teacher() {  # RUN ALPHA
    train_model "$1" "$PATIENCE" --task translation --criterion label_smoothed_teacher --label-smoothing "$2"
}

train_student() {  # RUN CACHE TEMPERATURE
    train_model "$1" "$STUDENT_PATIENCE" --task translation_kd --teacher-cache "$2" \
        --criterion word_kd --kd-temperature "$3" --kd-weight "$KD_WEIGHT" --label-smoothing "$STUDENT_LS"
}

# dump_teacher TEACHER_RUN CACHE: the teacher's top-k on train, then valid (the subsets a student loads);
# a subset whose cache is already published is kept. valid's fingerprint, written last, marks the stage done.
dump_teacher() {
    local teacher="$1" cache="$2" subset precision=()
    if [ "$FP16" = 1 ]; then precision=(--fp16); fi
    for subset in train valid; do
        if [ -f "$cache/$subset.json" ]; then continue; fi
        "$PYTHON" -m lskd_fairseq.cli.dump_teacher "$DATA_BIN" --teacher-path "$teacher/checkpoints/checkpoint_best.pt" \
            --subset "$subset" --topk "$TOPK" --out "$cache" -s "$SOURCE_LANG" -t "$TARGET_LANG" \
            --max-tokens "$MAX_TOKENS" "${precision[@]}"
    done
}

evaluate_run() {  # RUN
    "$PYTHON" -m lskd_nmt.evaluate "$DATA_BIN" --path "$1/checkpoints/checkpoint_best.pt" \
        --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" --subset "$EVAL_SUBSET" --beam "$BEAM" --out "$1/bleu.json" \
        "${EVAL_ARGS[@]}"
}

# A results table older than any bleu.json is rebuilt.
drop_stale_results() {
    local table="$RUN_DIR/results.csv"
    if [ -f "$table" ] && [ -n "$(find "$RUN_DIR" -mindepth 2 -maxdepth 2 -name bleu.json -newer "$table")" ]; then
        rm -f "$RUN_DIR/results.md" "$table"
    fi
}

# One lane of the grid: the teacher of label smoothing ALPHA, its evaluation and cache, then its students.
alpha_lane() {  # ALPHA
    local a teacher cache temperature student
    a="$(alpha_name "$1")"
    teacher="$RUN_DIR/teacher-a$a"
    cache="$teacher/cache-top$TOPK"
    stage "teacher-a$a" "$teacher/$TRAINED_MARKER" train_teacher "$teacher" "$1"
    stage "eval-teacher-a$a" "$teacher/bleu.json" evaluate_run "$teacher"
    stage "cache-a$a" "$cache/valid.json" dump_teacher "$teacher" "$cache"
    for temperature in $TEMPERATURES; do
        student="$RUN_DIR/student-a$a-T$temperature"
        stage "student-a$a-T$temperature" "$student/$TRAINED_MARKER" train_student "$student" "$cache" "$temperature"
        stage "eval-student-a$a-T$temperature" "$student/bleu.json" evaluate_run "$student"
    done
}

run_grid() {
    stage data "$DATA_DIR/bin" build_data
    run_lanes alpha_lane $ALPHAS
    drop_stale_results
    stage results "$RUN_DIR/results.csv" summarise "$PAPER_TABLE" "$BLEU_METRIC"
    cat "$RUN_DIR/results.md"
}

# nmt_recipe "$@": parse the flags, settle and check every setting, then run the grid.
nmt_recipe() {
    PROFILE="${PROFILE:-paper}"
    parse_recipe_args "$@"
    check_profile
    "profile_$PROFILE"
    "settle_$DATA_STAGE"
    common_defaults
    check_settings
    find_plugin_dir
    if [ "$GPUS" = 0 ]; then
        export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
        check_jobs "$(cores)"
    else
        check_jobs 1
    fi
    DATA_BIN="$DATA_DIR/bin"
    echo "$RECIPE: profile $PROFILE, $SOURCE_LANG->$TARGET_LANG, ALPHAS=\"$ALPHAS\" TEMPERATURES=\"$TEMPERATURES\", run folder $RUN_DIR, $JOBS lane(s) at once"
    run_grid
}
