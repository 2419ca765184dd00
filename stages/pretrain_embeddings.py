"""Stage pretrain_embeddings: Word2Vec vectors for the vocabulary, learnt on train + unlabelled reviews only."""

import argparse

import torch

from imdb_rnn.artifacts import run_main, write_json
from imdb_rnn.pretrained import save_pretrained
from imdb_rnn.embeddings import SCHEMA, check_sources, pretrain
from imdb_rnn.params import load_section
from imdb_rnn.text import read_vocab, vocab_sha256


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reviews", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()

    params = load_section(args.params, "pretrain_embeddings", SCHEMA)
    check_sources(params["sources"])  # before any reading: a bad setting fails at once
    vocab = read_vocab(args.vocab)
    matrix, report = pretrain(args.reviews, vocab, params)
    save_pretrained(args.out, "word2vec", {"dim": int(matrix.shape[1])}, torch.from_numpy(matrix), vocab_sha256(vocab))
    write_json(args.metrics, report)
    print(
        f"pretrain_embeddings: {matrix.shape[0]} x {matrix.shape[1]} float32, {report['words_covered']} trained, "
        f"{report['words_missing']} random, {report['seconds']} s ({report['words_per_second']} words/s) -> {args.out}"
    )
    for word, near in report["neighbours"].items():
        print(f"  {word}: {', '.join(f'{w} {s:.2f}' for w, s in near.items())}")


if __name__ == "__main__":
    run_main(main)
