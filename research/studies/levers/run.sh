#!/usr/bin/env bash
# Two levers on the chosen model as the pipeline trains it (bilstm_w2v_adv, 256 units, head +
# tail truncation), each against research/studies/vocab_trunc/h256_both (the same settings, constant rate, 5
# epochs; every seed kept epoch 4 on the movie split). Each seed trains alone with both threads.
#   refit   all 25,000 labelled training reviews (the validation reviews too) for the 4 epochs
#           validation chose; the last epoch is scored on test. No validation figure exists.
#   linear  lr_schedule linear: the rate decays to 0 over 4 epochs (a fifth less training); movie
#           split, chosen on validation as the baseline was.
# The params are research/studies/h128_movie/params.yaml plus the overrides, applied as `dvc exp run -S`
# applies them; the data is the pipeline's (`make pipeline` with params.yaml's tokenize settings).
# Usage: bash research/studies/levers/run.sh VARIANT [SEEDS...]   (logs of the 2026-11-30 runs: research/studies/levers/logs/)
set -euo pipefail
variant=${1:?usage: run.sh refit|linear [SEEDS...]}; shift; seeds=${*:-42 7 11}
common=("tokenize.truncate_side=both" "bilstm_w2v_adv.hidden_dim=256" "bilstm_w2v_adv.epochs=4")
case $variant in
  refit) overrides=("${common[@]}"); how="--refit" ;;
  linear) overrides=("${common[@]}" "++bilstm_w2v_adv.lr_schedule=linear"); how="--group-by movie" ;;
  *) echo "error: unknown variant '$variant': use refit or linear" >&2; exit 2 ;;
esac
params=build/levers/$variant/params.yaml
mkdir -p "$(dirname "$params")"
cp research/studies/h128_movie/params.yaml "$params"
python -c 'import sys; from dvc.utils.hydra import apply_overrides; apply_overrides(sys.argv[1], sys.argv[2:])' "$params" "${overrides[@]}"
python -c 'import json, sys, yaml; t = yaml.safe_load(open(sys.argv[1]))["tokenize"]; m = json.load(open("data/tokens/meta.json"))["tokenize"]
if m != t: sys.exit(f"error: data/tokens was made with {m}, the study needs {t}: run make pipeline first")' "$params"
python research/tools/split_stopping_study.py --data data --params "$params" --models bilstm_w2v_adv --seeds $seeds \
    $how --workers 1 --threads 2 --out "research/studies/levers/$variant"
