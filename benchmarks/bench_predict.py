"""How fast does imdb-predict score reviews? float32 against int8 dynamic quantization (and bfloat16).

Scores the real aclImdb test reviews end to end (cleaning, tokenizing, length-sorted batches,
the model) through imdb_rnn.predict.Predictor, once per precision, batch size and thread count,
and prints reviews/s. With a real checkpoint it also prints test accuracy per precision and checks
that a faster precision loses at most --max-drop accuracy points. Every precision is compared with
float32 at the same batch size and threads (float32 runs first, listed or not). Each setting scores
the reviews twice and the second pass is timed: a first pass over batch shapes the process has not
seen is slower (kernel set-up: oneDNN caches its primitives per shape; 2 to 6% on 2026-11-30), so
timing first passes would favour whichever setting runs later. The first pass's rate is printed too
(the first row's is a fresh process's). Without a checkpoint it builds a randomly initialised model
of the params.yaml section (speed only) and says so.

    python benchmarks/bench_predict.py                      # everything: 25,000 test reviews per setting
    python benchmarks/bench_predict.py --limit 500          # a quick check that it works
    python benchmarks/bench_predict.py --batch-sizes 64,128,256,512 --threads 1,2

Last it prints how near the best float32 rate is to the float32 torch.mm peak, measured then (the
recurrent layers' matrix products, counted as roofline.py counts them), and what share of that peak
--target reviews/s (default 2,000) would need.
"""

import argparse
import copy
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from machine import describe  # benchmarks/machine.py
from roofline import forward_flops_per_token, matmul_peak  # benchmarks/roofline.py

from imdb_rnn.checkpoint import load_checkpoint
from imdb_rnn.config import ModelConfig, arch_settings
from imdb_rnn.ingest import read_reviews, read_table
from imdb_rnn.params import load_section
from imdb_rnn.pipeline import PipelineError, run_main, write_json
from imdb_rnn.predict import PRECISIONS, Predictor, check_payload, lanes_for
from imdb_rnn.runtime import configure_cpu, native_bfloat16, no_bfloat16_reason
from imdb_rnn.text import CLEAN_SCHEMA, TOKENIZE_SCHEMA, build_vocab, clean_texts, count_words, read_vocab, split_words


def test_reviews(args):
    """(texts, labels, where from) of the test split; raw text when the pipeline kept it."""
    for path, what in ((args.ingested, "raw text"), (args.cleaned, "already cleaned text, cleaned again")):
        if Path(path).exists():
            table = read_table(path, columns=["split", "label", "text"])
            source = f"{path} ({what})"
            break
    else:
        if not Path(args.archive).exists():
            raise PipelineError(f"no test reviews: none of {args.ingested}, {args.cleaned}, {args.archive} exists")
        table, _ = read_reviews(args.archive)
        source = f"{args.archive} (raw text)"
    test = table.filter(pc.equal(table["split"], "test"))
    labels = (test["label"].to_numpy(zero_copy_only=False) == "pos").astype(np.int8)
    texts = test["text"].to_pylist()
    if args.limit and args.limit < len(texts):
        keep = np.sort(np.random.default_rng(args.seed).choice(len(texts), args.limit, replace=False))
        texts, labels = [texts[i] for i in keep], labels[keep]
    return texts, labels, source


def random_model(args, texts):
    """A randomly initialised model of the params.yaml section, with the pipeline's text settings."""
    arch = arch_settings(args.params, args.arch)[0]
    clean = load_section(args.params, "clean", CLEAN_SCHEMA)
    tokenize = load_section(args.params, "tokenize", TOKENIZE_SCHEMA)
    tokenize["seq_len"] = min(tokenize["seq_len"], arch["seq_len"])
    if Path(args.vocab).exists():
        vocab, vocab_from = read_vocab(args.vocab), args.vocab
    else:  # speed does not depend on which words are known, only on how many
        words, _ = split_words(clean_texts(texts, clean))
        vocab, vocab_from = build_vocab(count_words(words), 25_000, 2), "the benchmark's own reviews"
    torch.manual_seed(args.seed)
    config = ModelConfig.from_dict({**arch, "vocab_size": len(vocab)})
    payload = {
        "arch": args.arch,
        "model_config": config.as_dict(),
        "vocab": vocab,
        "clean": clean,
        "tokenize": tokenize,
    }
    check_payload(payload, "random model")
    return config.build().eval(), payload, vocab_from


def timed(predictor, texts):
    """(probabilities, seconds of the first pass, seconds of the second): see the module's docstring."""
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        probabilities = predictor.probabilities(texts)
        seconds.append(time.perf_counter() - start)
    return probabilities, *seconds


def limit(row, model_config, target):
    """A line on how near float32 scoring (`row`, the best float32 result) is to this CPU's float32 torch.mm
    peak, measured now with the row's threads (its lanes share them): the recurrent layers' matrix products
    on real tokens (roofline.py's count), the most reviews/s the peak allows, and the share of it `target`
    reviews/s needs."""
    configure_cpu(row["threads"])
    peak = matmul_peak(torch.float32)  # GFLOP/s
    flops = forward_flops_per_token(model_config)  # a token, forward
    tokens_per_review = row["tokens_per_second"] / row["reviews_per_second"]
    reached = flops * row["tokens_per_second"] / 1e9
    return (
        f"float32 against this CPU's limit: {flops:,} FLOP a token, {tokens_per_review:.1f} tokens a review; "
        f"{reached:.1f} GFLOP/s is {100 * reached / peak:.0f}% of the float32 torch.mm peak ({peak:.1f} GFLOP/s, "
        f"{torch.get_num_threads()} threads); at the peak, {peak * 1e9 / (flops * tokens_per_review):,.0f} reviews/s; "
        f"{target:,.0f} reviews/s would need {100 * target * tokens_per_review * flops / 1e9 / peak:.0f}% of it"
    )


def csv_ints(text):
    return [int(x) for x in text.split(",") if x.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default="data/models/bilstm/seed42.pt", help="checkpoint; a random model when it does not exist"
    )
    parser.add_argument("--arch", default="bilstm", help="params.yaml section of the random model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--vocab", default="data/vocab/vocab.txt")
    parser.add_argument("--ingested", default="data/ingest/reviews.parquet")
    parser.add_argument("--cleaned", default="data/clean/reviews.parquet")
    parser.add_argument("--archive", default="../shared/data/aclImdb_v1.tar.gz")
    parser.add_argument(
        "--limit", type=int, default=0, help="score a random sample of this many test reviews (0 = all)"
    )
    parser.add_argument("--precisions", default="float32,int8,bfloat16")
    parser.add_argument("--batch-sizes", default="64")
    parser.add_argument(
        "--threads", default="0", help="comma-separated thread counts (0 = every core this process may use)"
    )
    parser.add_argument(
        "--lanes",
        default="1,0",
        help="comma-separated scoring lanes (Predictor's lanes: 1 = one lane "
        "with every thread, 0 = auto, one lane a thread); float32 with 1 lane is the reference",
    )
    parser.add_argument("--max-drop", type=float, default=0.2, help="accuracy points a faster precision may lose")
    parser.add_argument("--target", type=float, default=2000, help="reviews/s to hold against this CPU's float32 peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    precisions = [p for p in args.precisions.split(",") if p]
    # the reference every other precision is compared with: float32, always, and first
    precisions = ["float32"] + [p for p in precisions if p != "float32"]
    if unknown := set(precisions) - set(PRECISIONS):
        raise PipelineError(f"unknown precision {sorted(unknown)[0]}: choose from {', '.join(PRECISIONS)}")
    if "bfloat16" in precisions and not native_bfloat16("cpu"):  # Predictor refuses it: say so, measure the rest
        print(f"bfloat16 not measured: {no_bfloat16_reason('cpu')}")
        precisions.remove("bfloat16")

    texts, labels, source = test_reviews(args)
    if Path(args.model).exists():
        model, payload = load_checkpoint(args.model)
        check_payload(payload, args.model)
        what = f"checkpoint {args.model} ({payload.get('arch')})"
        real = True
    else:
        model, payload, vocab_from = random_model(args, texts)
        what = (
            f"NO CHECKPOINT at {args.model}: a randomly initialised '{args.arch}' model from {args.params} "
            f"(vocabulary from {vocab_from}); speeds are real, accuracies are not"
        )
        real = False
    print(f"model: {what}")
    print(f"reviews: {len(texts)} test reviews from {source}")
    print(describe())
    print(f"native bfloat16 (runtime.native_bfloat16): {native_bfloat16('cpu')}")
    print(
        f"{'precision':<10} {'threads':>7} {'lanes':>5} {'batch':>6} {'reviews/s':>10} {'tokens/s':>10} "
        f"{'accuracy':>9} {'vs f32':>8} {'max|dp|':>8} {'1st pass':>9}"
    )

    results, reference = [], {}
    lanes_list = [1] + [n for n in csv_ints(args.lanes) if n != 1]  # one lane first: the reference
    for threads in csv_ints(args.threads):
        configure_cpu(threads)
        for batch_size, precision, lanes in product(csv_ints(args.batch_sizes), precisions, lanes_list):
            predictor = Predictor(
                copy.deepcopy(model), payload, precision=precision, batch_size=batch_size, lanes=lanes
            )
            probabilities, first_seconds, seconds = timed(predictor, texts)
            tokens = int(predictor.encode(texts)[0].lengths.sum())
            accuracy = float(((probabilities > 0.5) == (labels == 1)).mean())
            key = (threads, batch_size)
            if precision == "float32" and key not in reference:
                reference[key] = (accuracy, probabilities)
            used = lanes_for(lanes, len(texts), batch_size, predictor.device)
            row = {
                "precision": precision,
                "threads": torch.get_num_threads(),
                "lanes": used,
                "batch_size": batch_size,
                "reviews_per_second": round(len(texts) / seconds, 1),
                "tokens_per_second": round(tokens / seconds),
                "first_pass_reviews_per_second": round(len(texts) / first_seconds, 1),
                "accuracy": round(accuracy, 5) if real else None,
                "accuracy_change_points": round(100 * (accuracy - reference[key][0]), 3) if real else None,
                "max_probability_change": round(float(np.abs(probabilities - reference[key][1]).max()), 5),
            }
            results.append(row)
            acc = f"{accuracy:.4f}" if real else "n/a"
            change = f"{row['accuracy_change_points']:+.2f}pt" if real else "n/a"
            print(
                f"{precision:<10} {row['threads']:>7} {used:>5} {batch_size:>6} {row['reviews_per_second']:>10.0f} "
                f"{row['tokens_per_second']:>10.0f} {acc:>9} {change:>8} {row['max_probability_change']:>8.4f} "
                f"{row['first_pass_reviews_per_second']:>9.0f}",
                flush=True,
            )

    print()
    best = {}
    for row in results:
        if row["reviews_per_second"] > best.get(row["precision"], {}).get("reviews_per_second", 0):
            best[row["precision"]] = row
    base = best.get("float32")
    for precision, row in best.items():
        ratio = (
            f" ({row['reviews_per_second'] / base['reviews_per_second']:.2f}x float32)"
            if base and precision != "float32"
            else ""
        )
        print(
            f"best {precision}: {row['reviews_per_second']:.0f} reviews/s at batch {row['batch_size']}, "
            f"{row['threads']} threads, {row['lanes']} lane(s){ratio}, max|dp| {row['max_probability_change']:.2g}"
        )
    for row in results:
        if row["precision"] == "float32" and row["lanes"] > 1:
            one = next(
                r
                for r in results
                if r["precision"] == "float32"
                and r["lanes"] == 1
                and (r["threads"], r["batch_size"]) == (row["threads"], row["batch_size"])
            )
            print(
                f"float32, {row['lanes']} lanes against 1 at {row['threads']} threads, batch {row['batch_size']}: "
                f"{row['reviews_per_second'] / one['reviews_per_second']:.2f}x"
            )
    if base:
        print(limit(base, payload["model_config"], args.target))
    failed = False
    if real and base:
        for row in results:
            if row["precision"] != "float32" and row["accuracy_change_points"] < -args.max_drop:
                failed = True
                print(
                    f"ACCURACY: {row['precision']} at batch {row['batch_size']} "
                    f"loses {-row['accuracy_change_points']:.2f} points (limit {args.max_drop})"
                )
        if not failed:
            sample = " (on a sample: rerun without --limit to check the whole test set)" if args.limit else ""
            print(f"accuracy: every precision within {args.max_drop} points of float32{sample}")
    elif not real:
        print("accuracy: not checked (random model); train data/models/bilstm/seed42.pt and rerun")
    if args.out:
        write_json(args.out, {"model": what, "reviews": len(texts), "source": source, "results": results})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
