"""The pipeline's GPU path in one short run: train one architecture for one epoch and score the test set.

For the day a GPU is at hand: it runs the train and evaluate stages' own code (train.fit,
inference.predict_logits) on `--device` (auto: CUDA when present) with params.yaml's settings,
and prints the machine, the epoch's seconds and tokens/s, and the test set's reviews/s and accuracy.
On a CPU it runs the same path (the tests run it there on the tiny archive).

    python benchmarks/gpu_path.py                          # bilstm, one epoch, every review
    python benchmarks/gpu_path.py --arch gru --device cuda --batch-size 256
    python benchmarks/gpu_path.py --limit 2000             # a quick check on 2,000 training reviews
    python benchmarks/gpu_path.py --precision bfloat16     # bfloat16 autocast in training

Data: what `dvc repro split` writes (data/split/{train,val}.npz, data/tokens/{test.npz,meta.json},
data/vocab/vocab.txt), and data/pretrain/{word2vec,lm}.pt for a pretrained architecture.
"""

import argparse
import dataclasses
import sys
import time

import torch
from machine import describe  # benchmarks/machine.py

from imdb_rnn.batches import Reviews
from imdb_rnn.config import ModelConfig, arch_settings
from imdb_rnn.inference import accuracy, predict_logits
from imdb_rnn.pipeline import load_npz, read_json, run_main
from imdb_rnn.runtime import configure_cpu, pick_device
from imdb_rnn.text import read_vocab
from imdb_rnn.train import build_model, fit, pretrained_weights


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="bilstm")
    parser.add_argument("--data", default="data")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="training batch size (default: the architecture's)")
    parser.add_argument("--limit", type=int, help="train on the first N training reviews only")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        help="training precision (default: the architecture's; bfloat16 autocasts the matrix products)",
    )
    args = parser.parse_args()

    settings, config = arch_settings(args.params, args.arch)
    device = pick_device(args.device)
    config = dataclasses.replace(
        config,
        epochs=args.epochs,
        patience=args.epochs,
        device=device.type,
        batch_size=args.batch_size or config.batch_size,
        precision=args.precision or config.precision,
    )
    meta = read_json(f"{args.data}/tokens/meta.json", "tokenizer settings")
    seq_len = min(config.seq_len, meta["tokenize"]["seq_len"])
    parts = {}
    for name, path in (("train", "split/train.npz"), ("val", "split/val.npz"), ("test", "tokens/test.npz")):
        arrays = load_npz(f"{args.data}/{path}", f"{name} reviews")
        if name == "train" and args.limit:
            arrays = {k: v[: args.limit] for k, v in arrays.items()}
        parts[name] = Reviews.from_arrays(arrays, meta["tokenize"], seq_len)
    configure_cpu(config.threads)
    print(describe())
    if device.type == "cuda":
        print(
            f"gpu: {torch.cuda.get_device_name(device)}, "
            f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
        )
    model_config = ModelConfig.from_dict({**settings, "vocab_size": len(read_vocab(f"{args.data}/vocab/vocab.txt"))})
    weights = pretrained_weights(
        config, model_config, meta["vocab_sha256"], args.arch, f"{args.data}/pretrain/{config.pretrained}.pt"
    )
    model = build_model(model_config, config, weights)
    _, history, summary, timing = fit(model, parts["train"], parts["val"], config, device, name=args.arch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    logits = predict_logits(model, parts["test"], config.eval_batch_size, device)
    seconds = time.perf_counter() - start
    print(
        f"{args.arch} on {device}, {config.precision}: {len(parts['train'])} training reviews, "
        f"batch {config.batch_size}; {timing['seconds_per_epoch']} s per epoch, "
        f"{timing['tokens_per_second']:.0f} training tokens/s; "
        f"validation accuracy {summary['val_accuracy']:.4f}; test: {len(logits)} reviews in {seconds:.1f} s, "
        f"{len(logits) / seconds:.0f} reviews/s, accuracy {accuracy(logits, parts['test'].labels):.4f}"
    )


if __name__ == "__main__":
    sys.exit(run_main(main))
