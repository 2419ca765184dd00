#!/usr/bin/env bash
# Two levers in one study, each chosen on the movie split's validation accuracy.
#  - weight averaging (`ema_decay`): validate and keep an exponential moving average (EMA) of the
#    weights, a form of Polyak averaging. 0.995 averages over about 200 steps, two thirds of an epoch
#    here; set before any run, not tuned. A run with it also scores the trained weights themselves
#    (val_*_raw), which for every epoch are those of the same run without the average
#    (tests/test_train.py; the study runs every epoch), so on − off is paired: same seed, same
#    batches, same machine.
#  - 300-dimensional word vectors (Sachan et al., 2019, use 300) instead of 128, as bilstm_w2v_adv's
#    starting vectors and embedding width: 1.45x the recurrent matrix products a token
#    (4 x 256 x (300 + 256) against 4 x 256 x (128 + 256)). word2vec is rebuilt at 300 dimensions into
#    build/embed300 (every run: about 2 minutes), the pipeline's data/ gives the rest.
# Both variants run side by side, one thread each (so their times are not the "alone" measure of the
# 40-minute training budget).
# Run from the repository root; the code comes from this script's own checkout ($root), so the
# working tree may change while it runs. Usage: bash research/studies/ema/run.sh [SEEDS...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export PYTHONPATH=$root/src
seeds=${*:-42}
variant() {  # name, then overrides
    local dir=build/ema/$1; shift
    mkdir -p "$dir"
    cp params.yaml "$dir/params.yaml"
    python -c 'import sys; from dvc.utils.hydra import apply_overrides; apply_overrides(sys.argv[1], sys.argv[2:])' \
        "$dir/params.yaml" arch_defaults.ema_decay=0.995 "$@"
}
variant d128
variant d300 pretrain_embeddings.dim=300 arch_defaults.embed_dim=300 pretrain_lm.embed_dim=300
data=build/embed300
mkdir -p "$data/pretrain"
for part in clean tokens vocab; do ln -sfn "$PWD/data/$part" "$data/$part"; done
python "$root/stages/pretrain_embeddings.py" --params build/ema/d300/params.yaml --reviews data/clean/reviews.parquet \
    --vocab data/vocab/vocab.txt --out "$data/pretrain/word2vec.pt" --metrics "$data/word2vec.json"
study() {  # data, variant
    python "$root/tools/split_stopping_study.py" --data "$1" --params "build/ema/$2/params.yaml" --models bilstm_w2v_adv \
        --seeds $seeds --group-by movie --workers 1 --threads 1 --out "research/studies/ema/$2"
}
study data d128 > "research/studies/ema/d128_$(date +%F_%H%M).log" 2>&1 &
first=$!
study "$data" d300 > "research/studies/ema/d300_$(date +%F_%H%M).log" 2>&1 &
wait $first && wait $!  # either study failing fails the script
