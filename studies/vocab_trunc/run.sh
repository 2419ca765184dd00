#!/usr/bin/env bash
# #17 item 4: the vocabulary from train + unsup (50,000 entries) and head + tail truncation, each
# against params.yaml's settings, for bilstm_w2v_adv chosen on the movie split (the baseline rows are
# studies/h128_movie: the same params file but for the one change). Each variant rebuilds what the
# change touches (vocab, tokens, word2vec) into $DATA/VARIANT with the stage scripts, then trains.
# Usage: bash studies/vocab_trunc/run.sh VARIANT [SEEDS...]   (VARIANT: vocab50k or both)
set -euo pipefail
variant=$1; shift; seeds=${*:-42 7}
params=studies/vocab_trunc/params_$variant.yaml
data=${DATA:-build/vocab_trunc}/$variant
mkdir -p "$data/clean"
ln -sf "$PWD/data/clean/reviews.parquet" "$data/clean/reviews.parquet"  # cleaning is unchanged
python stages/vocab.py --params "$params" --counts data/clean/word_counts.tsv --out "$data/vocab/vocab.txt"
python stages/tokenize_pad.py --params "$params" --reviews data/clean/reviews.parquet --vocab "$data/vocab/vocab.txt" \
    --out-dir "$data/tokens" --report "$data/tokenize.json"
python stages/pretrain_embeddings.py --params "$params" --reviews data/clean/reviews.parquet --vocab "$data/vocab/vocab.txt" \
    --out "$data/pretrain/word2vec.pt" --metrics "$data/word2vec.json"
python tools/split_stopping_study.py --data "$data" --params "$params" --models bilstm_w2v_adv --seeds $seeds \
    --group-by movie --workers 2 --threads 1 --out "studies/vocab_trunc/$variant"
# The two choices together (256 units, head + tail truncation), on the `both` variant's data:
#   python tools/split_stopping_study.py --data build/vocab_trunc/both --params studies/vocab_trunc/params_h256_both.yaml \
#       --models bilstm_w2v_adv --seeds 42 --group-by movie --out studies/vocab_trunc/h256_both
