#!/usr/bin/env bash
# The vocabulary from train + unsup (50,000 entries) and head + tail truncation, each
# against params.yaml's settings of the time, for bilstm_w2v_adv chosen on the movie split (the
# baseline rows are research/studies/h128_movie, whose params file every variant starts from). A variant's
# params file is that file plus its overrides, applied as `dvc exp run -S` applies them; each
# variant rebuilds what its change touches (vocab, tokens, word2vec) into $DATA/VARIANT with the
# stage scripts, then trains (the study skips seeds whose runs it already has).
# Usage: bash research/studies/vocab_trunc/run.sh VARIANT [SEEDS...]
#   vocab50k   vocab.sources [train, unsup], vocab.max_size 50000
#   both       tokenize.truncate_side both (the first 128 tokens and the last 384)
#   h256_both  both, and bilstm_w2v_adv.hidden_dim 256: the two choices together
set -euo pipefail
variant=$1; shift; seeds=${*:-42 7}
case $variant in
  # the single changes trained two seeds side by side, the pair each seed alone with both threads
  vocab50k) overrides=("vocab.max_size=50000" "vocab.sources=[train,unsup]"); lanes="--workers 2 --threads 1" ;;
  both) overrides=("tokenize.truncate_side=both"); lanes="--workers 2 --threads 1" ;;
  h256_both) overrides=("tokenize.truncate_side=both" "bilstm_w2v_adv.hidden_dim=256"); lanes="--workers 1 --threads 2" ;;
  *) echo "error: unknown variant '$variant': use vocab50k, both or h256_both" >&2; exit 2 ;;
esac
data=${DATA:-build/vocab_trunc}/$variant
params=$data/params.yaml
mkdir -p "$data/clean"
cp research/studies/h128_movie/params.yaml "$params"
python -c 'import sys; from dvc.utils.hydra import apply_overrides; apply_overrides(sys.argv[1], sys.argv[2:])' "$params" "${overrides[@]}"
ln -sf "$PWD/data/clean/reviews.parquet" "$data/clean/reviews.parquet"  # cleaning is unchanged
python stages/vocab.py --params "$params" --counts data/clean/word_counts.tsv --out "$data/vocab/vocab.txt"
python stages/tokenize_pad.py --params "$params" --reviews data/clean/reviews.parquet --vocab "$data/vocab/vocab.txt" \
    --out-dir "$data/tokens" --report "$data/tokenize.json"
python stages/pretrain_embeddings.py --params "$params" --reviews data/clean/reviews.parquet --vocab "$data/vocab/vocab.txt" \
    --out "$data/pretrain/word2vec.pt" --metrics "$data/word2vec.json"
python research/tools/split_stopping_study.py --data "$data" --params "$params" --models bilstm_w2v_adv --seeds $seeds \
    --group-by movie $lanes --out "research/studies/vocab_trunc/$variant"
