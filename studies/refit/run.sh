#!/usr/bin/env bash
# #17: what do the 6,250 reviews held out for validation add to the chosen model once validation has
# chosen its settings (256 units, head + tail truncation) and its epoch count (every seed of
# studies/vocab_trunc/h256_both kept epoch 4 on the movie split)? Each seed trains bilstm_w2v_adv on
# all the labelled training reviews for 4 epochs, alone with both threads, and its last epoch is scored
# on test. The params are studies/h128_movie/params.yaml plus the overrides, applied as `dvc exp run -S`
# applies them; the data is the pipeline's (`make pipeline` with params.yaml's tokenize settings).
# Usage: bash studies/refit/run.sh [SEEDS...]
set -euo pipefail
seeds=${*:-42 7 11}
params=build/refit/params.yaml
mkdir -p build/refit
cp studies/h128_movie/params.yaml "$params"
python -c 'import sys; from dvc.utils.hydra import apply_overrides; apply_overrides(sys.argv[1], sys.argv[2:])' "$params" \
    tokenize.truncate_side=both bilstm_w2v_adv.hidden_dim=256 bilstm_w2v_adv.epochs=4
python -c 'import json, sys, yaml; t = yaml.safe_load(open(sys.argv[1]))["tokenize"]; m = json.load(open("data/tokens/meta.json"))["tokenize"]
if m != t: sys.exit(f"error: data/tokens was made with {m}, the study needs {t}: run make pipeline first")' "$params"
python tools/split_stopping_study.py --data data --params "$params" --models bilstm_w2v_adv --seeds $seeds \
    --refit --workers 1 --threads 2 --out studies/refit
