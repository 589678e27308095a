#!/usr/bin/env bash
# The NMT grid on lskd-toy-corpus, the embedded toy language pair: CPU, minutes per model. See --help.
set -euo pipefail
source "$(dirname "$0")/nmt_lib.sh"

# DATA_STAGE: the corpus (a small transformer on 200 updates, about 12 epochs of the toy profile's 2,000 pairs,
# reaches a high BLEU on it without saturating, so the students' differences across T show), binarised with one
# joined dictionary.
make_toy_data() {  # OUT
    "$PYTHON" -m lskd_nmt.toy_corpus --out "$1/text" --train "$TOY_TRAIN" --valid "$TOY_VALID" --test "$TOY_TEST" \
        --seed "$TOY_SEED"
    "$PYTHON" -m fairseq_cli.preprocess --source-lang src --target-lang tgt --joined-dictionary \
        --trainpref "$1/text/train" --validpref "$1/text/valid" --testpref "$1/text/test" --destdir "$1/bin" --workers 1
}

nmt_recipe toy_translation "$@"
