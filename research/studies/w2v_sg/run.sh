#!/usr/bin/env bash
# word2vec's skip-gram (sg: 1) against CBOW (sg: 0, params.yaml's) as bilstm_w2v_adv's starting
# vectors, chosen on the movie split's validation accuracy. The baseline rows are
# research/studies/vocab_trunc/h256_both (params.yaml's settings of today, CBOW), seeds 42, 7, 11.
# The variant's params file is params.yaml plus `pretrain_embeddings.sg=1`, applied as `dvc exp run -S`
# applies it; only word2vec is rebuilt (into $DATA, every run: about 5 minutes), the pipeline's data/ gives the rest.
# Usage: bash research/studies/w2v_sg/run.sh [SEEDS...]     (the study skips seeds whose runs it already has)
set -euo pipefail
seeds=${*:-42 7}
data=${DATA:-build/w2v_sg}
params=$data/params.yaml
mkdir -p "$data/pretrain"
cp params.yaml "$params"
python -c 'import sys; from dvc.utils.hydra import apply_overrides; apply_overrides(sys.argv[1], sys.argv[2:])' "$params" "pretrain_embeddings.sg=1"
for part in clean tokens vocab; do ln -sfn "$PWD/data/$part" "$data/$part"; done
python stages/pretrain_embeddings.py --params "$params" --reviews data/clean/reviews.parquet \
    --vocab data/vocab/vocab.txt --out "$data/pretrain/word2vec.pt" --metrics "$data/word2vec.json"
python research/tools/split_stopping_study.py --data "$data" --params "$params" --models bilstm_w2v_adv --seeds $seeds \
    --group-by movie --workers 2 --threads 1 --out research/studies/w2v_sg/sg1
