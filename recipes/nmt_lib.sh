# The stages of the NMT grid (paper §2.6, hyper-parameters §3.6) on fairseq with the lskd_fairseq plugin, shared
# by iwslt14_en_de.sh, iwslt14_de_en.sh, iwslt_en_ru.sh and toy_translation.sh. A recipe sources this file and
# calls `nmt_recipe NAME "$@"`; its settings, constants (SOURCE_LANG, TARGET_LANG, PAPER_TABLE, DATA_STAGE,
# EVAL_ARGS) and planned runs come from lskd_grid.recipe_table, checked there. DATA_STAGE names a function
# that writes a data folder holding bin/ to the new folder it is given.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TRAINED=training-finished
DISTILLED=distill-finished

# DATA_STAGE for IWSLT: data-prep/$PREPARE_SCRIPT with the recipe's text profile, vocabulary and release.
prepare_iwslt() {
    local out="$1" release=() lines=()
    if [ -n "$ORIG" ]; then release=(--orig "$ORIG"); fi
    if [ -n "$ARCHIVE" ]; then release=(--archive "$ARCHIVE"); fi
    if [ -n "$MAX_LINES" ]; then lines=(--max-lines "$MAX_LINES"); fi
    if [ -n "${SOURCE:-}" ]; then release+=(--source "$SOURCE"); fi
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

# train_model ROW DATA PATIENCE fairseq-args...: the run's manifest, then fairseq-train on DATA with the run's
# seed into RUN_DIR/<run>/checkpoints (resuming from its checkpoint_last.pt), then the marker that says it is finished.
train_model() {
    local row="$1" data="$2" patience="$3"
    shift 3
    local model_args=() extra_args=() device_args=()
    read -r -a model_args <<<"${MODEL_ARGS//$'\n'/ }"
    read -r -a extra_args <<<"${TRAIN_ARGS//$'\n'/ }"
    if [ "$GPUS" -gt 1 ]; then device_args+=(--distributed-world-size "$GPUS"); fi
    if [ "$FP16" = 1 ]; then device_args+=(--fp16); fi
    run_fields "$row"
    record_run "$row"
    fairseq_train "$data" --user-dir "$PLUGIN_DIR" \
        --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" \
        --arch "$ARCH" "${model_args[@]}" --dropout "$DROPOUT" \
        --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm "$CLIP_NORM" --weight-decay "$WEIGHT_DECAY" \
        --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP" --warmup-init-lr "$WARMUP_INIT_LR" \
        --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --required-batch-size-multiple 1 \
        --max-update "$MAX_UPDATE" --max-epoch "$MAX_EPOCH" --patience "$patience" --seed "$RUN_SEED" \
        --save-dir "$RUN_DIR/$RUN_NAME/checkpoints" --no-epoch-checkpoints \
        --log-format simple --log-interval "$LOG_INTERVAL" --no-progress-bar \
        "${device_args[@]}" "$@" "${extra_args[@]}"
    touch "$RUN_DIR/$RUN_NAME/$TRAINED"
}

# fairseq_train ARG...: fairseq-train; inside a Slurm job of several tasks, one process per task through srun,
# with fairseq's own Slurm initialisation (--distributed-port; on CPU the world size is given, gloo).
fairseq_train() {
    if [ "${SLURM_NTASKS:-1}" -gt 1 ]; then
        local world=(--distributed-world-size "$SLURM_NTASKS" --distributed-port "$(slurm_port)") device=()
        if [ "$GPUS" = 0 ]; then  # gloo; fairseq takes the task's local id as its CUDA device: none on CPU
            world+=(--distributed-backend gloo)
            device=(env SLURM_LOCALID=0)
        fi
        srun --kill-on-bad-exit=1 "${device[@]}" "$PYTHON" -m fairseq_cli.train "$@" "${world[@]}"
    else
        "$PYTHON" -m fairseq_cli.train "$@"
    fi
}

train_teacher() {  # ROW
    run_fields "$1"
    train_model "$1" "$DATA_BIN" "$PATIENCE" --task translation --criterion label_smoothed_teacher \
        --label-smoothing "$RUN_ALPHA"
}

# train_student ROW: word from the teacher's cache on the data; seq on the teacher's distilled folder, with the
# plain label-smoothed criterion; seq+word on the distilled folder, from the cache dumped on it.
train_student() {
    local teacher
    run_fields "$1"
    teacher="$RUN_DIR/$RUN_TEACHER"
    transfer_args kd- "$RUN_DIVERGENCE"
    case "$RUN_MODE" in
        word) train_model "$1" "$DATA_BIN" "$STUDENT_PATIENCE" --task translation_kd \
            --teacher-cache "$teacher/cache-top$TOPK" --criterion word_kd --kd-temperature "$RUN_T" \
            --kd-weight "$KD_WEIGHT" --label-smoothing "$STUDENT_LS" "${TRANSFER_ARGS[@]}" ;;
        seq) train_model "$1" "$teacher/distilled" "$STUDENT_PATIENCE" --task translation \
            --criterion label_smoothed_teacher --label-smoothing "$STUDENT_LS" ;;
        seq+word) train_model "$1" "$teacher/distilled" "$STUDENT_PATIENCE" --task translation_kd \
            --teacher-cache "$teacher/distilled-cache-top$TOPK" --criterion word_kd --kd-temperature "$RUN_T" \
            --kd-weight "$KD_WEIGHT" --label-smoothing "$STUDENT_LS" "${TRANSFER_ARGS[@]}" ;;
    esac
}

# dump_teacher TEACHER_RUN DATA CACHE: the teacher's top-k on DATA's train, then valid (the subsets a student
# loads); a subset whose cache is already published is kept. valid's fingerprint, written last, marks it done.
# With TOPK_TAIL=1 it also stores the tail at each teacher temperature (TEACHER_TEMPERATURE, else TEMPERATURES),
# with LOGIT_STANDARDIZATION=1 the rows' standardisation statistics.
dump_teacher() {
    local teacher="$1" data="$2" cache="$3" subset precision=() stored=() tail_temperatures=()
    if [ "$FP16" = 1 ]; then precision=(--fp16); fi
    if [ "$TOPK_TAIL" = 1 ]; then
        read -r -a tail_temperatures <<<"${TEACHER_TEMPERATURE:-$TEMPERATURE_NAMES}"
        stored+=(--tail-temperatures "${tail_temperatures[@]}")
    fi
    if [ "$LOGIT_STANDARDIZATION" = 1 ]; then stored+=(--standardization-stats); fi
    for subset in train valid; do
        if [ -f "$cache/$subset.json" ]; then continue; fi
        "$PYTHON" -m lskd_fairseq.cli.dump_teacher "$data" --teacher-path "$teacher/checkpoints/checkpoint_best.pt" \
            --subset "$subset" --topk "$TOPK" --out "$cache" -s "$SOURCE_LANG" -t "$TARGET_LANG" \
            --max-tokens "$MAX_TOKENS" "${precision[@]}" "${stored[@]}"
    done
}

# distill_corpus TEACHER_RUN: the teacher's beam translations of train (sequence-level KD) as a complete data
# folder, TEACHER_RUN/distilled; the marker beside it says the command finished.
distill_corpus() {
    local teacher="$1" device=()
    if [ "$GPUS" = 0 ]; then device=(--cpu); fi
    if [ "$FP16" = 1 ]; then device+=(--fp16); fi
    "$DISTILL_CORPUS" "$DATA_BIN" --teacher-path "$teacher/checkpoints/checkpoint_best.pt" --subset train \
        --out "$teacher/distilled" --beam "$DISTILL_BEAM" --lenpen "$DISTILL_LENPEN" --max-tokens "$MAX_TOKENS" \
        --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" "${device[@]}"
    touch "$teacher/$DISTILLED"
}

evaluate_run() {  # RUN: scored on the original data (a distilled folder keeps its valid and test sets)
    "$PYTHON" -m lskd_nmt.evaluate "$DATA_BIN" --path "$1/checkpoints/checkpoint_best.pt" \
        --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" --subset "$EVAL_SUBSET" --beam "$BEAM" \
        --out "$1/bleu.json" "${EVAL_ARGS[@]}"
}

# export_run RUN Q: RUN's checkpoint_best.pt as a CTranslate2 folder of quantisation Q, RUN/ct2-Q (its
# manifest, written last, says it is done; --force replaces one left without it).
export_run() {
    "$PYTHON" -m lskd_deploy.export "$1/checkpoints/checkpoint_best.pt" --data-bin "$DATA_BIN" --out "$1/ct2-$2" \
        --quantization "$2" --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" --force
}

# evaluate_deployed RUN Q: evaluate_run through CTranslate2 with RUN/ct2-Q at its exported quantisation, into
# RUN/bleu-ct2-Q/ (bleu.json and its translation log). On CPU with the threads fairseq-generate had, so the
# decode times of the two bleu.json files compare.
evaluate_deployed() {
    local threads=()
    if [ "$GPUS" = 0 ]; then threads=(--threads "$OMP_NUM_THREADS"); fi
    "$PYTHON" -m lskd_nmt.evaluate "$DATA_BIN" --engine ctranslate2 --model "$1/ct2-$2" \
        --source-lang "$SOURCE_LANG" --target-lang "$TARGET_LANG" --subset "$EVAL_SUBSET" --beam "$BEAM" \
        --out "$1/bleu-ct2-$2/bleu.json" "${threads[@]}" "${EVAL_ARGS[@]}"
}

# deploy_run RUN_NAME: for each quantisation in EXPORT, its export, then its evaluation (lskd_grid.stages.deployment).
deploy_run() {
    local folder="$RUN_DIR/$1" q
    for q in $EXPORT; do
        stage "export-$q-$1" "$folder/ct2-$q/lskd-export.json" export_run "$folder" "$q"
        stage "eval-$q-$1" "$folder/bleu-ct2-$q/bleu.json" evaluate_deployed "$folder" "$q"
    done
}

wants() { case " $KD_MODES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# One lane of the grid: the teacher, its evaluation, what its students need (cache, distilled corpus, the cache
# on that corpus), then its students, each followed by its evaluation; each model's evaluation is followed by its
# exports (EXPORT) and their evaluations.
teacher_lane() {  # TEACHER_ROW
    local teacher id row
    run_fields "$1"
    teacher="$RUN_DIR/$RUN_NAME" id="${RUN_NAME#teacher-}"
    stage "$RUN_NAME" "$teacher/$TRAINED" train_teacher "$1"
    stage "eval-$RUN_NAME" "$teacher/bleu.json" evaluate_run "$teacher"
    deploy_run "$RUN_NAME"
    if wants word; then
        stage "cache-$id" "$teacher/cache-top$TOPK/valid.json" dump_teacher "$teacher" "$DATA_BIN" "$teacher/cache-top$TOPK"
    fi
    if wants seq || wants seq+word; then
        stage "distill-$id" "$teacher/$DISTILLED" distill_corpus "$teacher"
    fi
    if wants seq+word; then
        stage "distilled-cache-$id" "$teacher/distilled-cache-top$TOPK/valid.json" \
            dump_teacher "$teacher" "$teacher/distilled" "$teacher/distilled-cache-top$TOPK"
    fi
    lane_students "$RUN_NAME"
    for row in "${LANE_STUDENTS[@]}"; do
        run_fields "$row"
        stage "$RUN_NAME" "$RUN_DIR/$RUN_NAME/$TRAINED" train_student "$row"
        stage "eval-$RUN_NAME" "$RUN_DIR/$RUN_NAME/bleu.json" evaluate_run "$RUN_DIR/$RUN_NAME"
        deploy_run "$RUN_NAME"
    done
}

# nmt_recipe NAME ARG...: settle and check every setting, then run the grid.
nmt_recipe() {
    settle "$@"
    PLUGIN_DIR="$REPO_ROOT/lskd_fairseq"
    DATA_BIN="$DATA_DIR/bin"
    if [ "$GPUS" = 0 ]; then export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
    echo "$RECIPE: profile $PROFILE, $SOURCE_LANG->$TARGET_LANG, ${#TEACHERS[@]} teachers, ${#STUDENTS[@]} students (ALPHAS=\"$ALPHAS\" TEMPERATURES=\"$TEMPERATURES\" SEEDS=\"$SEEDS\" KD_MODES=\"$KD_MODES\"), run folder $RUN_DIR, $JOBS lane(s) at once"
    stage data "$DATA_BIN" build_data
    run_lanes teacher_lane "${TEACHERS[@]}"
    if [ -f "$DATA_BIN/lskd-prep.json" ]; then
        results_stage "$PAPER_TABLE" "$BLEU_METRIC" --data-manifest "$DATA_BIN/lskd-prep.json"
    else
        results_stage "$PAPER_TABLE" "$BLEU_METRIC"
    fi
}
