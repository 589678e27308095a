#!/usr/bin/env bash
# make demo: the paper's experiment end to end on embedded data, on CPU, through the recipes users run.
#   translation: toy language pair, teachers alpha 0.0 / 0.1 -> top-4 teacher caches -> students T = 1 2 3
#                -> sacreBLEU -> alpha x T table
#   vision:      scikit-learn digits, the same grid -> top-1 table -> Fig. 1-style figure + diffusion measures
# Finished stages are reused, so a second run only prints the results.
# Environment: DEMO_DIR (demo-runs), DEMO_TEMPERATURES ("1 2 3"; add 64 for the paper's collapse),
#              DEMO_SIZE (full | smallest: the CI setting, minutes less, numbers meaningless).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
DEMO_DIR="${DEMO_DIR:-demo-runs}"
DEMO_TEMPERATURES="${DEMO_TEMPERATURES:-1 2 3}"
DEMO_SIZE="${DEMO_SIZE:-full}"
case "$DEMO_SIZE" in
    full) translation_profile=toy; digits_epochs="" ;;
    smallest) translation_profile=tiny; digits_epochs=1 ;;
    *) echo "demo: DEMO_SIZE must be full or smallest, got '$DEMO_SIZE'" >&2; exit 2 ;;
esac
for needed in 1 3; do
    case " $DEMO_TEMPERATURES " in
        *" $needed "*) ;;
        *) echo "demo: DEMO_TEMPERATURES must include 1 and 3 (the figure compares them), got '$DEMO_TEMPERATURES'" >&2
           exit 2 ;;
    esac
done

started=$(date +%s)
echo "== 1/2 translation: toy language pair, teachers alpha 0.0 / 0.1, students T = $DEMO_TEMPERATURES"
ALPHAS="0.0 0.1" TEMPERATURES="$DEMO_TEMPERATURES" RUN_DIR="$DEMO_DIR/translation" PROFILE="$translation_profile" \
    bash recipes/toy_translation.sh
echo "== 2/2 vision: digits, teachers alpha 0.0 / 0.1, students T = $DEMO_TEMPERATURES"
ALPHAS="0.0 0.1" TEMPERATURES="$DEMO_TEMPERATURES" DIFFUSION_TEMPERATURES="1 3" EPOCHS="$digits_epochs" \
    bash recipes/digits.sh "$DEMO_DIR/digits"

echo
echo "== Translation: sacreBLEU on the toy test set ($DEMO_DIR/translation/results.md)"
cat "$DEMO_DIR/translation/results.md"
echo
echo "== Vision: digits validation top-1 % ($DEMO_DIR/digits/results.md)"
cat "$DEMO_DIR/digits/results.md"
echo
echo "== Systematic diffusion on digits (the project's measure, docs/analysis.md)"
"$PYTHON" -m lskd_report.diffusion_report "$DEMO_DIR/digits/diffusion.json"
echo "   figure (paper Fig. 1 layout): $DEMO_DIR/digits/diffusion.png"
echo "   measures:                     $DEMO_DIR/digits/diffusion.json"
echo "demo finished in $(( $(date +%s) - started )) s"
