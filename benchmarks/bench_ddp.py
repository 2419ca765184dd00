"""Benchmark: data-parallel training under torchrun against one process, same model, same reviews.

Trains a params.yaml architecture (default gru) on the first --limit reviews of the training split
twice in one command:

  one process   python, train.threads = every core, batches of batch_size
  N processes   torchrun --nproc_per_node N, gloo (or NCCL on GPUs), the cores shared out, each rank
                taking batches of batch_size / N

Equal work: both take the same optimiser steps with the same effective batch (batch_size reviews per
step) over the same reviews. (With --same-per-rank-batch each rank takes batch_size instead, as
`train.processes` does in the pipeline: the effective batch is then N x batch_size and the N
processes take 1/N of the steps, which is not the same training.) Each runs two epochs and the
second is timed: the first pays the warm-up (allocations, kernel choice, gloo's first collectives).
Validation is never timed. Prints the training tokens/s of each and their ratio.

    python benchmarks/bench_ddp.py                     # gru, 3,000 reviews, 2 processes
    python benchmarks/bench_ddp.py --arch bilstm --limit 2000 --processes 2
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import describe  # benchmarks/machine.py

from imdb_rnn import distributed
from imdb_rnn.batches import Reviews
from imdb_rnn.config import ModelConfig, TrainConfig, arch_settings
from imdb_rnn.pipeline import read_json, usable_cores
from imdb_rnn.runtime import configure_cpu, seed_everything
from imdb_rnn.train import fit

ROOT = Path(__file__).resolve().parents[1]


def worker(args):
    """One training epoch in this process (a torchrun rank or the single process); rank 0 reports."""
    settings, config = arch_settings(ROOT / "params.yaml", args.arch)
    # two epochs: the first warms up, the second is timed
    arch = dict(settings, epochs=2, patience=2, batch_size=args.batch_size)
    common = dict(config.as_dict(), threads=0, device="cpu" if not torch.cuda.is_available() else "auto")
    meta = read_json(ROOT / "data/tokens/meta.json", "tokenizer settings")
    reviews = Reviews.load(ROOT / "data/split/train.npz", meta["tokenize"], arch["seq_len"], "training split")
    idx = np.arange(min(args.limit, len(reviews)))
    train = Reviews(reviews.ids[idx], reviews.lengths[idx], reviews.labels[idx])
    val = Reviews(reviews.ids[idx[:256]], reviews.lengths[idx[:256]], reviews.labels[idx[:256]])
    configure_cpu(0)
    context = distributed.setup("cuda" if torch.cuda.is_available() else "cpu")
    seed_everything(common["seed"])
    device = torch.device("cuda", context.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    model = ModelConfig.from_dict({**arch, "vocab_size": meta["vocab_size"]}).build()
    _, history, _, timing = fit(
        model, train, val, TrainConfig.from_dict({**common, **arch}), device, name=args.arch, context=context
    )
    if context.is_main_process:
        # optimiser steps per epoch: bucketed() cuts each pool of bucket_pool batches, then ranks share them
        pool = arch["batch_size"] * common["bucket_pool"]
        chunks = [min(pool, len(train) - start) for start in range(0, len(train), pool)]
        steps = sum(-(-chunk // arch["batch_size"]) for chunk in chunks) // context.world_size
        timed = history[-1]
        Path(args.report).write_text(
            json.dumps(
                {
                    **timing,
                    "tokens_per_second": timed["tokens_per_second"],
                    "train_seconds": round(timed["seconds"], 2),
                    "steps": steps,
                    "batch_size": arch["batch_size"],
                    "processes": context.world_size,
                }
            )
        )
    distributed.shutdown(context)


def run(command, report):
    env = dict(os.environ, TQDM_DISABLE="1")
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(Path(report).read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="gru")
    parser.add_argument("--limit", type=int, default=3000, help="training reviews (one epoch)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--same-per-rank-batch",
        action="store_true",
        help="each rank takes batch_size (as the pipeline does): N x the effective batch, 1/N of the steps",
    )
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if not (ROOT / "data/split/train.npz").exists():
        sys.exit("error: data/split/train.npz is missing: run the pipeline first (make pipeline)")
    batch = arch_settings(ROOT / "params.yaml", args.arch)[0]["batch_size"]
    per_rank = batch if args.same_per_rank_batch else batch // args.processes
    if per_rank < 1:
        sys.exit(f"error: {args.arch}.batch_size {batch} cannot be shared by {args.processes} processes")
    me = [str(Path(__file__).resolve()), "--worker", "--arch", args.arch, "--limit", str(args.limit)]
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        single = run(
            [sys.executable, *me, "--batch-size", str(batch), "--report", f"{tmp}/one.json"], f"{tmp}/one.json"
        )
        multi = run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                str(args.processes),
                *me,
                "--batch-size",
                str(per_rank),
                "--report",
                f"{tmp}/many.json",
            ],
            f"{tmp}/many.json",
        )
    print(f"{args.arch}, {args.limit} reviews, the second of two epochs timed, on {usable_cores()} cores")
    for what, r in (("1 process", single), (f"{args.processes} processes (DDP)", multi)):
        print(
            f"  {what} x {r['threads']} threads, {r['batch_size']} reviews per rank and step "
            f"(effective batch {r['batch_size'] * r['processes']}), {r['steps']} optimiser steps: "
            f"{r['tokens_per_second']:,.0f} tokens/s ({r['train_seconds']} s)"
        )
    same = single["steps"] == multi["steps"] and single["batch_size"] == multi["batch_size"] * multi["processes"]
    print(
        f"  ratio: {multi['tokens_per_second'] / single['tokens_per_second']:.2f}x"
        + ("" if same else "  (NOT equal work: other effective batch and step count, see above)")
    )


if __name__ == "__main__":
    main()
