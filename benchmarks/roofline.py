"""Benchmark: how near each architecture trains and scores to this CPU's matrix-multiply peak.

1. Peak: torch.mm of two 2048 x 2048 matrices in float32 and (where native) in bfloat16, best of 5 timed runs after
   a warm-up, in GFLOP/s (2 n^3 FLOPs a product).
2. Per architecture: the same length-bucketed batches of data/split/train.npz, trained as train.fit
   trains them (forward, BCE, backward, fused Adam) and scored as the evaluate stage scores them
   (inference mode, eval_batch_size). The FLOPs counted are the recurrent layers' matrix products
   on real tokens: 2 x gates x hidden x (input + hidden) per token, layer and direction forward,
   three times that with backward (the convention of the issue: bilstm 1.57 MFLOP a token).
   Each figure is a percentage of the float32 peak measured above in the same process.
3. Where a training step's time goes: torch.profiler over the timed batches, each op's own time
   grouped as recurrent kernels, embedding + optimiser, dropout masks, and the rest; then the epoch's other
   costs measured apart: validation (scoring the validation split once an epoch, from the
   inference figure) and data (Reviews.batch, numpy to tensors).
4. Levers, as ratios to today's path (float32, the architecture's batch size) in the same run:
   bfloat16 autocast, twice the batch, and both (the bfloat16 paths only where the CPU runs bfloat16
   natively: runtime.native_bfloat16). Every path takes its batches from the same
   reviews, sorted by length and cut at either size; the first two batches of either size warm up.

The groups of (3) go by the profiler's op names: a fused recurrent kernel (the LSTM's oneDNN
layer) counts as recurrent, but PyTorch's CPU GRU and tanh RNN run step by step as matrix products
and pointwise ops, which land in "other ops".

    python benchmarks/roofline.py                          # bilstm and gru, 12 timed batches each
    python benchmarks/roofline.py --arch bilstm lstm gru stacked_lstm attention rnn --batches 8

Data: data/split/train.npz and data/split/val.npz (+ data/tokens/meta.json) from the data stages.
"""

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from bench_train import WARMUP, time_batches  # benchmarks/bench_train.py: the same training step
from machine import describe  # benchmarks/machine.py

from imdb_rnn.batches import Reviews, bucketed
from imdb_rnn.cells import CELLS
from imdb_rnn.config import ModelConfig, arch_settings
from imdb_rnn.inference import predict_logits
from imdb_rnn.optim import make_optimizer
from imdb_rnn.params import read_params
from imdb_rnn.pipeline import read_json
from imdb_rnn.runtime import configure_cpu, native_bfloat16, no_bfloat16_reason

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype, n=2048, repeats=5):
    """GFLOP/s of the best of `repeats` n x n products (after one untimed)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def timed(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def forward_flops_per_token(arch):
    """The recurrent layers' forward FLOPs for one real token: 2 x gates x hidden x (input + hidden),
    per layer and direction."""
    directions = 2 if arch["bidirectional"] else 1
    hidden, total = arch["hidden_dim"], 0
    for layer in range(arch["num_layers"]):
        inputs = arch["embed_dim"] if layer == 0 else hidden * directions
        total += directions * 2 * CELLS[arch["cell"]].gates * hidden * (inputs + hidden)
    return total


def category(op):
    name = op.lower()
    if any(k in name for k in ("lstm", "gru", "rnn_tanh", "mkldnn_rnn", "rnn_layer", "rnnlayer", "_thnn_fused")):
        return "recurrent kernels"
    if "embedding" in name or "adam" in name:
        return "embedding + optimiser"
    if "bernoulli" in name:  # dropout's masks: serial off Intel CPUs (research/studies/dropout/masks_2026-11-30.log)
        return "dropout masks"
    return "other ops"


def train_steps(model, optimizer, reviews, batches, bf16=False, profile=False):
    """(seconds, real tokens, seconds in Reviews.batch, {category: seconds}) of training on batches[WARMUP:],
    after batches[:WARMUP] untimed: bench_train's training step, as train.fit takes it."""
    data_seconds = []

    def make_batch(rows):
        start = time.perf_counter()
        ids, lengths, labels = reviews.batch(rows, "cpu")
        data_seconds.append(time.perf_counter() - start)
        return ids, lengths, labels, reviews.tokens(rows)

    shares = defaultdict(float)
    run = lambda: time_batches(model, optimizer, batches[:WARMUP], batches[WARMUP:], make_batch, bf16)  # noqa: E731
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        with profiler(activities=[ProfilerActivity.CPU]) as prof:
            seconds, tokens = run()
        for event in prof.key_averages():
            shares[category(event.key)] += event.self_cpu_time_total / 1e6
    else:
        seconds, tokens = run()
    return seconds, tokens, sum(data_seconds[WARMUP:]), shares


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["bilstm", "gru"], help="params.yaml architecture sections")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--train", type=Path, default=ROOT / "data/split/train.npz")
    parser.add_argument("--val", type=Path, default=ROOT / "data/split/val.npz")
    parser.add_argument("--meta", type=Path, default=ROOT / "data/tokens/meta.json")
    parser.add_argument(
        "--batches", type=int, default=12, help=f"timed training batches per path ({WARMUP} more warm up)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = every core this process may use)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    configure_cpu(args.threads)
    params = read_params(args.params)
    meta = read_json(args.meta, "tokenizer settings")
    seq_len = meta["tokenize"]["seq_len"]
    train = Reviews.load(args.train, meta["tokenize"], seq_len, "training split")
    val = Reviews.load(args.val, meta["tokenize"], seq_len, "validation split")
    print(describe())
    # bfloat16 only where the hardware runs it: emulated, it says nothing about a lever and takes minutes
    bf16_paths = native_bfloat16("cpu")
    fp32 = matmul_peak(torch.float32)
    if bf16_paths:
        bf16 = matmul_peak(torch.bfloat16)
        print(
            f"matmul peak (2048 x 2048, {torch.get_num_threads()} threads): float32 {fp32:,.1f} GFLOP/s, "
            f"bfloat16 {bf16:,.1f} GFLOP/s ({bf16 / fp32:.2f}x)"
        )
    else:
        print(
            f"matmul peak (2048 x 2048, {torch.get_num_threads()} threads): float32 {fp32:,.1f} GFLOP/s; "
            f"bfloat16 paths not measured: {no_bfloat16_reason('cpu')}"
        )
    print(
        f"data: {args.train} ({len(train)} reviews, mean {train.lengths.mean():.0f} tokens); "
        f"{args.batches} timed batches per path, {WARMUP} warm-up"
    )

    for name in args.arch:
        arch = arch_settings(args.params, name)[0]
        per_token = forward_flops_per_token(arch)
        batch_size = arch["batch_size"]
        rng = np.random.default_rng(args.seed)
        # the same reviews on every path, sorted by length and cut into batches of batch_size or of
        # twice that (as bucketing makes them), in a shuffled order; the first WARMUP of each warm up
        rows = np.concatenate(
            bucketed(train.lengths, batch_size, rng, params["train"]["bucket_pool"])[: args.batches + 2 * WARMUP]
        )
        rows = rows[np.argsort(train.lengths[rows], kind="stable")]
        small, large = (
            [rows[i : i + size] for i in range(0, len(rows), size)] for size in (batch_size, 2 * batch_size)
        )
        small, large = [small[i] for i in rng.permutation(len(small))], [large[i] for i in rng.permutation(len(large))]
        if len(large) <= WARMUP:
            raise SystemExit(
                f"error: {args.train} has too few reviews for {args.batches} batches of {2 * batch_size}: "
                "lower --batches"
            )
        print(
            f"\n{name}: {arch['cell']} {arch['hidden_dim']}, {'bi' if arch['bidirectional'] else 'uni'}directional "
            f"x{arch['num_layers']}, batch {batch_size}; {per_token * 3 / 1e6:.2f} MFLOP a token trained, "
            f"{per_token / 1e6:.2f} scored"
        )
        results = {}
        paths = (
            ("float32", small, False),
            ("bfloat16", small, True),
            ("float32, batch x2", large, False),
            ("bfloat16, batch x2", large, True),
        )
        for path, batches, use_bf16 in (p for p in paths if bf16_paths or not p[2]):
            torch.manual_seed(args.seed)
            model = ModelConfig.from_dict({**arch, "vocab_size": meta["vocab_size"]}).build()
            optimizer = make_optimizer(model, arch["lr"], arch["weight_decay"])
            seconds, tokens, data_seconds, _ = train_steps(model, optimizer, train, batches, use_bf16)
            rate = tokens / seconds
            results[path] = rate
            print(
                f"  train {path:<19} {rate:10,.0f} tokens/s  {3 * per_token * rate / 1e9:7.1f} GFLOP/s  "
                f"{100 * 3 * per_token * rate / 1e9 / fp32:5.1f}% of float32 peak  "
                f"({rate / results['float32']:.2f}x today's path)"
            )
            if path == "float32":
                base = (seconds, tokens, data_seconds)
                # the profiler slows what it watches: a separate run, for the shares only
                profiled = train_steps(model, optimizer, train, batches, profile=True)[3]
        # scoring, as evaluate does: inference mode, eval_batch_size, a fixed sample of the validation split
        sample = Reviews(val.ids[:2048], val.lengths[:2048], val.labels[:2048])
        predict_logits(
            model, Reviews(val.ids[:256], val.lengths[:256], val.labels[:256]), params["evaluate"]["batch_size"], "cpu"
        )
        score_seconds = timed(lambda: predict_logits(model, sample, params["evaluate"]["batch_size"], "cpu"))
        score_rate = sample.tokens() / score_seconds
        print(
            f"  score float32 {score_rate:16,.0f} tokens/s  {per_token * score_rate / 1e9:7.1f} GFLOP/s  "
            f"{100 * per_token * score_rate / 1e9 / fp32:5.1f}% of float32 peak"
        )
        # an epoch: the training split's steps at the float32 rate, plus one scoring of the validation split
        seconds, tokens, data_seconds = base
        epoch_train = train.tokens() / (tokens / seconds)
        epoch_val = val.tokens() / score_rate
        profiled_total = sum(profiled.values())
        print(f"  an epoch, float32 (estimated from these rates): {epoch_train + epoch_val:,.0f} s")
        for part, share in sorted(profiled.items(), key=lambda kv: -kv[1]):
            print(f"    {part:<24} {100 * share / profiled_total * epoch_train / (epoch_train + epoch_val):5.1f}%")
        print(f"    {'validation':<24} {100 * epoch_val / (epoch_train + epoch_val):5.1f}%")
        print(
            f"    {'data (in the above)':<24} "
            f"{100 * data_seconds / seconds * epoch_train / (epoch_train + epoch_val):5.1f}%"
        )


if __name__ == "__main__":
    main()
