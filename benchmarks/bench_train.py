"""Benchmark: training speed in real tokens per second, the exercise's way against ours.

All three train the same model (params.yaml `rnn` section: the exercise's embedding 100, one tanh
RNN of 32 units; --arch picks another section) on the same training reviews, in one run, for N
batches each. Equal work: the reviews of our N bucketed batches are the reviews the exercise trains
on, shuffled into random batches of the same size, so every method reads exactly the same real
tokens. Two further batches per method warm up (first calls allocate and pick kernels); their
reviews are shared out the same way, and they are not timed.

  exercise        every review left-padded to 512 and fed whole (the RNN reads the padding too),
                  random batches of batch_size, no bucketing: RecurrentClassifier with every
                  length = 512; PyTorch's defaults (per-parameter Adam, denormal floats kept)
  exercise+cpu    the same batches with our trainer's CPU settings (train.make_optimizer's fused
                  Adam, train.configure_cpu's denormal flushing): what the batching alone buys
  ours            our trainer: length-bucketed batches (imdb_rnn.batches.bucketed) trimmed to their
                  longest review, each review read over its exact span, with those CPU settings
  ours+bf16       the same with train.precision: bfloat16 (autocast: bfloat16 matrix products,
                  float32 weights and optimiser), as train.fit runs it

Each step is forward + BCE loss + backward + Adam. Only real (non-padding) tokens are counted.

    python benchmarks/bench_train.py                       # data/split/train.npz, 40 batches each
    python benchmarks/bench_train.py --arch bilstm --batches 10
    python benchmarks/bench_train.py --limit 500 --batches 3   # a quick check

Data: data/split/train.npz (+ data/tokens/meta.json) when present, else the training reviews of
../shared/data/aclImdb_v1.tar.gz tokenized as params.yaml says, else synthetic reviews (noted).
"""

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe  # benchmarks/machine.py
from torch import nn

from imdb_rnn.batches import Reviews, align_left, bucketed
from imdb_rnn.config import ModelConfig, arch_settings
from imdb_rnn.optim import make_optimizer
from imdb_rnn.params import read_params
from imdb_rnn.pipeline import read_json, usable_cores
from imdb_rnn.runtime import native_bfloat16, no_bfloat16_reason
from imdb_rnn.text import build_vocab, clean_texts, count_words, split_words, tokenize

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz"
EXERCISE_LEN = 512
WARMUP = 2  # batches per method before the clock starts


def texts_to_reviews(texts, labels, params, seq_len):
    words, _ = split_words(clean_texts(texts, params["clean"]))
    vocab = build_vocab(count_words(words), params["vocab"]["max_size"], params["vocab"]["min_freq"])
    settings = dict(params["tokenize"], seq_len=seq_len)
    ids, kept, _ = tokenize(texts, vocab, params["clean"], settings)
    return Reviews(align_left(ids, kept, settings["pad_side"]), kept, np.asarray(labels)), len(vocab)


def load_reviews(args, params):
    """(Reviews, vocabulary size, description) from the best source available."""
    seq_len = EXERCISE_LEN
    if args.data.exists() and args.meta.exists():
        meta = read_json(args.meta, "tokenizer settings")
        seq_len = meta["tokenize"]["seq_len"]
        return Reviews.load(args.data, meta["tokenize"], seq_len, "training split"), meta["vocab_size"], str(args.data)
    if args.source.exists():
        from imdb_rnn.ingest import read_reviews

        table, _ = read_reviews(str(args.source))
        train = [
            (t, label == "pos")
            for t, s, label in zip(*(table[c].to_pylist() for c in ("text", "split", "label")))
            if s == "train"
        ]
        reviews, vocab_size = texts_to_reviews([t for t, _ in train], [y for _, y in train], params, seq_len)
        return reviews, vocab_size, f"{args.source} (training reviews, tokenized as params.yaml says)"
    sys.path.insert(0, str(ROOT / "tests"))
    from synthetic import review

    rng = random.Random(0)
    labels = [i % 2 for i in range(4000)]
    texts = [review(rng, "pos" if y else "neg", 20, 600) for y in labels]
    reviews, vocab_size = texts_to_reviews(texts, labels, params, seq_len)
    return reviews, vocab_size, "SYNTHETIC reviews (20-600 words; no real data found): figures are indicative only"


def left_padded(reviews, rows, width):
    """The exercise's input: each review's tokens at the right end of a zero row of `width`."""
    out = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        n = min(int(reviews.lengths[r]), width)
        out[i, width - n :] = reviews.ids[r, :n]
    return out


def time_batches(model, optimizer, warmup, batches, make_batch, bf16=False):
    """Train on the warm-up batches untimed, then on `batches`; return (seconds, real tokens) of those."""
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    seconds, tokens = 0.0, 0
    for step, rows in enumerate(warmup + batches):
        start = time.perf_counter()
        ids, lengths, labels, real = make_batch(rows)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids, lengths).float()
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= len(warmup):
            seconds += time.perf_counter() - start
            tokens += real
    return seconds, tokens


def random_batches(batches, batch_size, rng):
    """The reviews of `batches`, shuffled into random batches of batch_size (the exercise's batching)."""
    rows = rng.permutation(np.concatenate(batches))
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


METHODS = ("exercise", "exercise+cpu", "ours", "ours+bf16")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--arch", default="rnn", help="a params.yaml architecture section (default rnn, the exercise's)"
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "data/split/train.npz")
    parser.add_argument("--meta", type=Path, default=ROOT / "data/tokens/meta.json")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--batches", type=int, default=40, help=f"timed batches per method ({WARMUP} more warm up)")
    parser.add_argument("--limit", type=int, default=0, help="use the first N training reviews only")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = params.yaml train.threads)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        help="which to time (default: all); `--methods ours` gives one architecture's training tokens/s alone",
    )
    args = parser.parse_args()

    params = read_params(args.params)
    arch = arch_settings(ROOT / "params.yaml", args.arch)[0]
    threads = args.threads or params["train"]["threads"] or usable_cores()
    torch.set_num_threads(threads)

    reviews, vocab_size, described = load_reviews(args, params)
    if args.limit:
        keep = np.arange(min(args.limit, len(reviews)))
        reviews = Reviews(reviews.ids[keep], reviews.lengths[keep], reviews.labels[keep])
    batch_size, n = arch["batch_size"], args.batches + WARMUP
    print(describe())
    print(f"data: {described}: {len(reviews)} reviews, mean length {reviews.lengths.mean():.0f} tokens")
    print(
        f"model: {args.arch} ({arch['cell']}, hidden {arch['hidden_dim']}, embed {arch['embed_dim']}, "
        f"{'bi' if arch['bidirectional'] else 'uni'}directional x{arch['num_layers']}, {arch['pooling']} pooling), "
        f"batch {batch_size}, {args.batches} timed batches each, {threads} threads"
    )

    rng = np.random.default_rng(args.seed)
    width = min(EXERCISE_LEN, reviews.ids.shape[1])

    def exercise_batch(rows):
        ids = torch.from_numpy(left_padded(reviews, rows, width))
        lengths = torch.full((len(rows),), width, dtype=torch.int64)
        real = int(np.minimum(reviews.lengths[rows], width).sum())
        return ids, lengths, torch.from_numpy(reviews.labels[rows]), real

    def our_batch(rows):
        ids, lengths, labels = reviews.batch(rows, "cpu")
        return ids, lengths, labels, reviews.tokens(rows)

    # ours: an epoch's first n length-bucketed batches; the exercise: the same reviews in random batches
    our_rows = (bucketed(reviews.lengths, batch_size, rng, params["train"]["bucket_pool"]) * n)[:n]
    ours = (our_rows[:WARMUP], our_rows[WARMUP:])
    exercise = (random_batches(ours[0], batch_size, rng), random_batches(ours[1], batch_size, rng))
    timed = np.concatenate(ours[1])
    print(
        f"timed reviews (the same on every side): {len(timed)}, mean length {reviews.lengths[timed].mean():.0f} tokens "
        f"(all reviews: {reviews.lengths.mean():.0f}); warm-up batches excluded"
    )

    results = {}
    methods = (
        ("exercise", exercise, exercise_batch, False),
        ("exercise+cpu", exercise, exercise_batch, True),
        ("ours", ours, our_batch, True),
        ("ours+bf16", ours, our_batch, True),
    )
    if not native_bfloat16("cpu"):  # emulated bfloat16 measures nothing worth having, slowly
        methods = methods[:-1]
    methods = tuple(m for m in methods if m[0] in args.methods)
    counted = set()
    for name, (warmup, rows), make_batch, our_cpu_settings in methods:
        torch.set_flush_denormal(our_cpu_settings)
        torch.manual_seed(args.seed)
        model = ModelConfig.from_dict({**arch, "vocab_size": vocab_size}).build()
        if our_cpu_settings:
            optimizer = make_optimizer(model, arch["lr"], arch["weight_decay"])
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=arch["lr"], weight_decay=arch["weight_decay"])
        seconds, tokens = time_batches(model, optimizer, warmup, rows, make_batch, bf16=name.endswith("bf16"))
        counted.add(tokens)
        results[name] = tokens / seconds
        print(
            f"  {name:<12} {seconds:7.2f} s  {tokens:10,} real tokens  {tokens / seconds:12,.0f} tokens/s", flush=True
        )
    assert len(counted) <= 1, f"the methods read different numbers of real tokens: {counted}"
    if {"ours", "exercise", "exercise+cpu"} <= set(results):
        print(f"  speed-up (ours / exercise): {results['ours'] / results['exercise']:.1f}x")
        print(
            f"  of which batching alone (ours / exercise+cpu): {results['ours'] / results['exercise+cpu']:.1f}x, "
            f"CPU settings alone (exercise+cpu / exercise): {results['exercise+cpu'] / results['exercise']:.1f}x"
        )
    if "ours+bf16" in results and "ours" in results:
        print(f"  bfloat16 training (ours+bf16 / ours): {results['ours+bf16'] / results['ours']:.2f}x")
    elif "ours+bf16" in args.methods and not native_bfloat16("cpu"):
        print(f"  bfloat16 training not measured: {no_bfloat16_reason('cpu')}")


if __name__ == "__main__":
    main()
