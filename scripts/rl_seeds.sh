#!/usr/bin/env bash
# The rl evidence of issue #32: the shipped defaults (`tarot-eval rl --reward R`, no other flag but the training
# seed) for seeds 0-2, each scored on every held-out prompt by the stock `lm_eval` and by `rl-report`, all under
# results/rl/. Re-running skips what is done (a finished training leaves result.json, an evaluation its
# results_*.json); one training or evaluation at a time, each with the cores it is given.
#   TAROT_DATA_DIR=../shared/data scripts/rl_seeds.sh [TAROT_EVAL=tarot-eval] [OUT=results/rl]
set -euo pipefail
cd "$(dirname "$0")/.."
te=${1:-tarot-eval}
python="$(dirname "$(command -v "$te")")/python"  # the stock lm_eval, run by the interpreter of that install
out=${2:-results/rl}
declare -A task=([sentiment]=tarot_imdb [toxicity]=tarot_detox)
for reward in sentiment toxicity; do
  base=$out/$reward/base
  if ! compgen -G "$base/*/results_*.json" > /dev/null; then
    "$python" -m lm_eval --model tarot-hf --tasks "${task[$reward]}" --device cpu --batch_size 16 --log_samples --output_path "$base"
  fi
  runs=("base=$base")
  for seed in 0 1 2; do
    run=$out/$reward/seed-$seed
    [ -f "$run/train/result.json" ] || "$te" rl --reward "$reward" --seed "$seed" --out "$run/train"
    if ! compgen -G "$run/eval/*/results_*.json" > /dev/null; then
      "$python" -m lm_eval --model tarot-hf --model_args "rotations=$run/train" --tasks "${task[$reward]}" --device cpu \
        --batch_size 16 --log_samples --output_path "$run/eval"
    fi
    runs+=("seed-$seed=$run/eval")
  done
  "$te" rl-report --task "${task[$reward]}" --out "$out/$reward/report.md" "${runs[@]}"
done
