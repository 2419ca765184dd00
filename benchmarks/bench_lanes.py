"""Benchmark: two independent trainings side by side with one thread each, against one with every core.

The pipeline's training stages are independent of each other (train@gru-42 and train@bilstm-42 share
only their inputs), so a 2-core machine can run one stage with 2 threads, or two stages at once with
1 thread each. Which finishes the work sooner depends on how well one training uses a second thread:
an LSTM step is a chain of small matrix products, so the second thread often idles.

In one command, on the same length-bucketed batches of data/split/train.npz, trained as train.fit
trains them (bench_train's training step: forward, BCE, backward, fused Adam):

  one lane    this process, torch threads = every core, the batches once
  N lanes     N spawned processes, 1 thread each (the cores shared out), every one training its own
              copy of the model on the same batches; they start together (a barrier after their
              warm-up) and the wall time from the first start to the last end is timed

Prints the CPU, each path's training tokens/s (all lanes together) and the ratio. A ratio above 1
means side-by-side stages finish the pipeline's training sooner on this CPU.

    python benchmarks/bench_lanes.py                        # bilstm and gru, 12 timed batches, 2 lanes
    python benchmarks/bench_lanes.py --arch lstm --batches 20
"""

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch
from bench_train import WARMUP, time_batches  # benchmarks/bench_train.py: the same training step
from machine import describe  # benchmarks/machine.py

from imdb_rnn.batches import Reviews, bucketed
from imdb_rnn.config import ModelConfig, arch_settings
from imdb_rnn.optim import make_optimizer
from imdb_rnn.params import read_params
from imdb_rnn.pipeline import read_json, usable_cores
from imdb_rnn.runtime import configure_cpu

ROOT = Path(__file__).resolve().parents[1]


def batches_of(args, name):
    """(arch settings, reviews, batches): the first WARMUP + args.batches length-bucketed batches of the split."""
    params = read_params(args.params)
    meta = read_json(args.meta, "tokenizer settings")
    arch = arch_settings(args.params, name)[0]
    reviews = Reviews.load(args.train, meta["tokenize"], meta["tokenize"]["seq_len"], "training split")
    rng = np.random.default_rng(args.seed)
    batches = bucketed(reviews.lengths, arch["batch_size"], rng, params["train"]["bucket_pool"])[
        : WARMUP + args.batches
    ]
    if len(batches) < WARMUP + args.batches:
        raise SystemExit(
            f"error: {args.train} has {len(batches)} batches of {arch['batch_size']}, "
            f"fewer than {WARMUP + args.batches}: lower --batches"
        )
    return {**arch, "vocab_size": meta["vocab_size"]}, reviews, batches


def train_lane(args, name, threads, barrier=None):
    """(start, end, real tokens) of training a fresh model on the timed batches with `threads` threads;
    start and end are time.perf_counter() stamps (one clock for every process on Linux)."""
    configure_cpu(threads)
    arch, reviews, batches = batches_of(args, name)
    torch.manual_seed(args.seed)
    model = ModelConfig.from_dict(arch).build()
    optimizer = make_optimizer(model, arch["lr"], arch["weight_decay"])
    make_batch = lambda rows: (*reviews.batch(rows, "cpu"), reviews.tokens(rows))  # noqa: E731
    time_batches(model, optimizer, batches[:WARMUP], [], make_batch)
    if barrier is not None:
        barrier.wait()
    start = time.perf_counter()
    _, tokens = time_batches(model, optimizer, [], batches[WARMUP:], make_batch)
    return start, time.perf_counter(), tokens


def lane_process(args, name, barrier, results):
    results.put(train_lane(args, name, 1, barrier))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["bilstm", "gru"], help="params.yaml architecture sections")
    parser.add_argument(
        "--lanes",
        type=int,
        default=usable_cores(),
        help="trainings side by side, 1 thread each (default: one per core this process may use)",
    )
    parser.add_argument(
        "--batches", type=int, default=12, help=f"timed training batches per lane ({WARMUP} more warm up)"
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--train", type=Path, default=ROOT / "data/split/train.npz")
    parser.add_argument("--meta", type=Path, default=ROOT / "data/tokens/meta.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.lanes < 2:
        raise SystemExit(f"error: --lanes {args.lanes}: side by side needs at least 2")
    for path in (args.train, args.meta):
        if not path.exists():
            raise SystemExit(f"error: {path} is missing: run the pipeline's data stages first (dvc repro split)")

    configure_cpu(0)
    print(describe())
    cores = torch.get_num_threads()
    print(
        f"{args.batches} timed batches per lane after {WARMUP} warm-up; one lane: {cores} threads; "
        f"{args.lanes} lanes: 1 thread each"
    )
    spawn = mp.get_context("spawn")
    for name in args.arch:
        start, end, tokens = train_lane(args, name, 0)
        one = tokens / (end - start)
        barrier, results = spawn.Barrier(args.lanes), spawn.Queue()
        lanes = [spawn.Process(target=lane_process, args=(args, name, barrier, results)) for _ in range(args.lanes)]
        for lane in lanes:
            lane.start()
        stamps = [results.get() for _ in lanes]
        for lane in lanes:
            lane.join()
            if lane.exitcode:
                raise SystemExit(f"error: a lane training {name} exited with {lane.exitcode}")
        many = sum(s[2] for s in stamps) / (max(s[1] for s in stamps) - min(s[0] for s in stamps))
        print(
            f"{name}: one lane x {cores} threads {one:10,.0f} tokens/s; {args.lanes} lanes x 1 thread "
            f"{many:10,.0f} tokens/s together; ratio {many / one:.2f}x"
        )


if __name__ == "__main__":
    main()
