"""Benchmark: data-parallel training under torchrun against one process, same model, same reviews.

Trains one epoch of a params.yaml architecture (default gru) on the first --limit reviews of the
training split twice in one command:

  one process   python, train.threads = every core
  N processes   torchrun --nproc_per_node N, gloo (or NCCL on GPUs), the cores shared out

and prints the training tokens/s of each and their ratio. On a 2-core CPU expect no gain: DDP is
for several GPUs or machines; this shows what its overhead costs where it cannot help.

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

from imdb_rnn import distributed
from imdb_rnn.artifacts import read_json
from imdb_rnn.batches import Reviews
from imdb_rnn.params import check, read_params
from imdb_rnn.train import ARCH_SCHEMA, build_model, fit, model_config, seed_everything, configure_cpu

ROOT = Path(__file__).resolve().parents[1]


def worker(args):
    """One training epoch in this process (a torchrun rank or the single process); rank 0 reports."""
    params = read_params(ROOT / "params.yaml")
    arch = check(args.arch, dict(params[args.arch], epochs=1, patience=1), ARCH_SCHEMA)
    common = dict(params["train"], threads=0, device="cpu" if not torch.cuda.is_available() else "auto")
    meta = read_json(ROOT / "data/tokens/meta.json", "tokenizer settings")
    reviews = Reviews.load(ROOT / "data/split/train.npz", meta["tokenize"], arch["max_len"], "training split")
    idx = np.arange(min(args.limit, len(reviews)))
    train = Reviews(reviews.ids[idx], reviews.lengths[idx], reviews.labels[idx])
    valid = Reviews(reviews.ids[idx[:256]], reviews.lengths[idx[:256]], reviews.labels[idx[:256]])
    configure_cpu(0)
    context = distributed.setup("cuda" if torch.cuda.is_available() else "cpu")
    seed_everything(common["seed"])
    device = torch.device("cuda", context.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    model = build_model(model_config(arch, meta["vocab_size"]))
    _, _, _, timing = fit(model, train, valid, arch, common, device, name=args.arch, context=context)
    if context.is_main_process:
        Path(args.report).write_text(json.dumps(timing))
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
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if not (ROOT / "data/split/train.npz").exists():
        sys.exit("error: data/split/train.npz is missing: run the pipeline first (make pipeline)")
    me = [str(Path(__file__).resolve()), "--worker", "--arch", args.arch, "--limit", str(args.limit)]
    with tempfile.TemporaryDirectory() as tmp:
        single = run([sys.executable, *me, "--report", f"{tmp}/one.json"], f"{tmp}/one.json")
        multi = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes),
                     *me, "--report", f"{tmp}/many.json"], f"{tmp}/many.json")
    print(f"{args.arch}, {args.limit} reviews, one epoch on {os.cpu_count()} cores")
    print(f"  1 process x {single['threads']} threads: {single['tokens_per_second']:,.0f} tokens/s ({single['train_seconds']} s)")
    print(f"  {args.processes} processes x {multi['threads']} threads (DDP): {multi['tokens_per_second']:,.0f} tokens/s ({multi['train_seconds']} s)")
    print(f"  ratio: {multi['tokens_per_second'] / single['tokens_per_second']:.2f}x")


if __name__ == "__main__":
    main()
