#!/usr/bin/env bash
# make demo: the paper's experiment end to end on embedded data, on CPU, through the recipes users run.
#   translation: toy language pair, teachers alpha 0.0 / 0.1 -> top-4 teacher caches (and, with DEMO_KD_MODES
#                "word seq", the teachers' distilled corpora) -> students T = 1 3 -> sacreBLEU -> table
#   vision:      scikit-learn digits, the same grid -> top-1 table -> Fig. 1-style figure + diffusion measures
# Finished stages are reused, so a second run only prints the results. See --help for the settings.
set -euo pipefail
cd "$(dirname "$0")/.."
source recipes/lib.sh
settle demo "$@"
case "$DEMO_SIZE" in
    full) translation_profile=toy; digits_epochs="" ;;
    smallest) translation_profile=tiny; digits_epochs=1 ;;
esac
export PYTHON
first_seed="${DEMO_DIGITS_SEEDS%% *}"

started=$SECONDS
echo "== 1/2 translation: toy language pair, teachers alpha 0.0 / 0.1, $DEMO_KD_MODES students, T = $DEMO_TEMPERATURES, seeds $DEMO_SEEDS"
ALPHAS="0.0 0.1" TEMPERATURES="$DEMO_TEMPERATURES" SEEDS="$DEMO_SEEDS" KD_MODES="$DEMO_KD_MODES" \
    RUN_DIR="$DEMO_DIR/translation" PROFILE="$translation_profile" EXPORT="$DEMO_EXPORT" bash recipes/toy_translation.sh &
wait $!  # in the background, so that an interrupt reaches this script at once (recipes/lib.sh, stop_run)
echo "== 2/2 vision: digits, teachers alpha 0.0 / 0.1, students T = $DEMO_TEMPERATURES, seeds $DEMO_DIGITS_SEEDS"
ALPHAS="0.0 0.1" TEMPERATURES="$DEMO_TEMPERATURES" SEEDS="$DEMO_DIGITS_SEEDS" DIFFUSION_TEMPERATURES="1 3" \
    EPOCHS="$digits_epochs" RUN_DIR="$DEMO_DIR/digits" bash recipes/digits.sh &
wait $!

echo
echo "== Translation: sacreBLEU on the toy test set ($DEMO_DIR/translation/results.md)"
cat "$DEMO_DIR/translation/results.md"
echo
echo "== Vision: digits validation top-1 % ($DEMO_DIR/digits/results.md)"
cat "$DEMO_DIR/digits/results.md"
echo
diffusion="$DEMO_DIR/digits/diffusion-s$first_seed"
echo "== Systematic diffusion on digits, seed $first_seed (the project's measure, docs/analysis.md)"
"$PYTHON" -m lskd_report.diffusion_report "$diffusion/diffusion.json"
echo "   figure (paper Fig. 1 layout): $diffusion/diffusion.png"
echo "   measures:                     $diffusion/diffusion.json"
echo "demo finished in $((SECONDS - started)) s"
