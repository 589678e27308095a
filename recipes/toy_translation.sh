#!/usr/bin/env bash
# The NMT α × T grid on lskd-toy-corpus, the embedded toy language pair: CPU, minutes per model. See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"
RECIPE=toy_translation
RECIPE_SUMMARY="Toy language pair (lskd-toy-corpus, word-level, no subwords): the paper's grid on CPU, no download.
Default PROFILE=toy: ARCH=transformer, 2+2 layers, 64-d, FFN 256, 4 heads, MAX_UPDATE=200, MAX_TOKENS=1024,
LR=3e-3, WARMUP=100, DROPOUT=0.1, GPUS=0; the other defaults are the paper profile's."
SOURCE_LANG=src TARGET_LANG=tgt PAPER_TABLE=none
DATA_STAGE=make_toy_data
EVAL_ARGS=(--profile modern --subword none)
DATA_HELP="  TOY_TRAIN        training pairs of the toy corpus (4000; [tiny] 400)
  TOY_VALID        validation pairs (300; [tiny] 40)
  TOY_TEST         test pairs (300; [tiny] 40)
  TOY_SEED         corpus seed (1)"

# A small transformer on a budget of 200 updates (about 6 epochs): teachers reach a high BLEU without saturating,
# so the students' differences across T show.
profile_toy() {
    : "${ARCH:=transformer}"
    : "${MODEL_ARGS:=--share-all-embeddings --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 64
        --decoder-embed-dim 64 --encoder-ffn-embed-dim 256 --decoder-ffn-embed-dim 256
        --encoder-attention-heads 4 --decoder-attention-heads 4}"
    : "${MAX_UPDATE:=200}" "${PATIENCE:=-1}" "${STUDENT_PATIENCE:=-1}" "${MAX_TOKENS:=1024}"
    : "${LR:=3e-3}" "${WARMUP:=100}" "${DROPOUT:=0.1}" "${GPUS:=0}" "${LOG_INTERVAL:=50}"
    : "${RUN_DIR:=runs/$RECIPE}"
}

settle_make_toy_data() {
    if [ "$PROFILE" = tiny ]; then
        : "${TOY_TRAIN:=400}" "${TOY_VALID:=40}" "${TOY_TEST:=40}"
    else
        : "${TOY_TRAIN:=4000}" "${TOY_VALID:=300}" "${TOY_TEST:=300}"
    fi
    : "${TOY_SEED:=1}"
    local name
    for name in TOY_TRAIN TOY_VALID TOY_TEST; do expect_int "$name" 1; done
    expect_int TOY_SEED 0
}

make_toy_data() {  # OUT
    "$PYTHON" -m lskd_nmt.toy_corpus --out "$1/text" --train "$TOY_TRAIN" --valid "$TOY_VALID" --test "$TOY_TEST" \
        --seed "$TOY_SEED"
    "$PYTHON" -m fairseq_cli.preprocess --source-lang src --target-lang tgt --joined-dictionary \
        --trainpref "$1/text/train" --validpref "$1/text/valid" --testpref "$1/text/test" --destdir "$1/bin" --workers 1
}

PROFILE="${PROFILE:-toy}"
nmt_recipe "$@"
