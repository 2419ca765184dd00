"""Benchmark: clean + count + tokenize + pad the training reviews, the exercise's way against ours.

Both run on the same reviews in the same process and print reviews per second:

  exercise  a faithful copy of the chapter's code: lower(), a per-character ''.join that drops
            string.punctuation, one ' '.join blob split into words, Counter.most_common, a
            word -> id dict, list-comprehension tokenization and its per-row numpy pad_sequence
  ours      imdb_rnn.text: clean_texts, split_words, count_words, build_vocab, encode, pad
            (Arrow kernels over chunks on every core), with the params.yaml settings

A second "ours" pass uses the exercise's settings (no <br /> stripping, every word kept) and its
word counts are compared with the exercise's, to show that the work done is the same.

    python benchmarks/bench_text.py                 # the 25,000 training reviews of ../shared/data
    python benchmarks/bench_text.py --limit 2000    # fewer reviews
    python benchmarks/bench_text.py --stages        # also: time and peak memory of the five data stages
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from string import punctuation

import numpy as np
import yaml
from machine import describe  # benchmarks/machine.py

from imdb_rnn.ingest import read_reviews
from imdb_rnn.params import read_params, stage_arguments
from imdb_rnn.pipeline import usable_cores
from imdb_rnn.text import build_vocab, clean_texts, count_words, encode, pad, split_words

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz"
DATA_STAGES = ("ingest", "clean", "vocab", "tokenize_pad", "split")


# --- the exercise, as written in the chapter -----------------------------------------------------


def pad_sequence(reviews_tokenized, sequence_length):
    """The exercise's function, verbatim."""
    padded_reviews = np.zeros((len(reviews_tokenized), sequence_length), dtype=int)
    for idx, review in enumerate(reviews_tokenized):
        review_len = len(review)
        if review_len <= sequence_length:
            zeroes = list(np.zeros(sequence_length - review_len))
            new_sequence = zeroes + review
        elif review_len > sequence_length:
            new_sequence = review[0:sequence_length]
        padded_reviews[idx, :] = np.array(new_sequence)
    return padded_reviews


def exercise_way(texts, sequence_length):
    review_list = [review.lower() for review in texts]
    review_list = ["".join([letter for letter in review if letter not in punctuation]) for review in review_list]
    reviews_blob = " ".join(review_list)
    review_words = reviews_blob.split()
    count_words_ = Counter(review_words)
    total_review_words = len(review_words)
    sorted_review_words = count_words_.most_common(total_review_words)
    vocab_to_token = {word: idx + 1 for idx, (word, count) in enumerate(sorted_review_words)}
    reviews_tokenized = []
    for review in review_list:
        word_to_token = [vocab_to_token[word] for word in review.split()]
        reviews_tokenized.append(word_to_token)
    padded = pad_sequence(reviews_tokenized, sequence_length)
    return padded, count_words_


# --- ours ----------------------------------------------------------------------------------------


def our_way(texts, clean, vocab_params, tokenize):
    words, lengths = split_words(clean_texts(texts, clean))
    counts = count_words(words)
    vocab = build_vocab(counts, vocab_params["max_size"], vocab_params["min_freq"])
    matrix, _ = pad(encode(words, vocab), lengths, tokenize["seq_len"], tokenize["pad_side"], tokenize["truncate_side"])
    return matrix, counts


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def compare_counts(exercise_counts, our_counts):
    ours = dict(zip(our_counts["word"].to_pylist(), our_counts["count"].to_pylist()))
    if ours == dict(exercise_counts):
        return "identical word counts"
    only_ours = sorted(set(ours) - set(exercise_counts))
    only_theirs = sorted(set(exercise_counts) - set(ours))
    differ = [w for w in set(ours) & set(exercise_counts) if ours[w] != exercise_counts[w]]
    return (
        f"word counts DIFFER: {len(only_ours)} words only in ours {[*only_ours[:5]]}, {len(only_theirs)} only in "
        f"the exercise's {[*only_theirs[:5]]}, {len(differ)} counted differently {sorted(differ)[:5]}"
    )


def bench_text(args, params):
    print(f"reading the training reviews from {args.source} ...", flush=True)
    table, _ = read_reviews(str(args.source))
    texts = [t for t, s in zip(table["text"].to_pylist(), table["split"].to_pylist()) if s == "train"]
    if args.limit:
        texts = texts[: args.limit]
    n, seq_len = len(texts), params["tokenize"]["seq_len"]
    print(f"{n} reviews, padded to {seq_len}; {usable_cores()} CPU cores this process may use")

    # warm-up, untimed, for both: Arrow's thread pool, first allocations
    our_way(texts[:50], params["clean"], params["vocab"], params["tokenize"])
    exercise_way(texts[:50], seq_len)
    exercise_seconds, (exercise_matrix, exercise_counts) = timed(exercise_way, texts, seq_len)
    ours_seconds, (our_matrix, _) = timed(our_way, texts, params["clean"], params["vocab"], params["tokenize"])
    same_clean = {"lowercase": True, "strip_html_breaks": False, "punctuation": "remove"}
    every_word = {"max_size": 10**9, "min_freq": 1}
    same_seconds, (_, same_counts) = timed(our_way, texts, same_clean, every_word, params["tokenize"])

    rows = [
        ("exercise (per-character Python loop)", exercise_seconds),
        ("ours, params.yaml settings", ours_seconds),
        ("ours, the exercise's settings", same_seconds),
    ]
    for name, seconds in rows:
        print(f"  {name:<38} {seconds:8.2f} s  {n / seconds:12,.0f} reviews/s")
    print(
        f"  speed-up (ours / exercise): {exercise_seconds / ours_seconds:.1f}x with params.yaml settings, "
        f"{exercise_seconds / same_seconds:.1f}x with the exercise's"
    )
    print(
        f"  check: {compare_counts(exercise_counts, same_counts)}; "
        f"matrices {exercise_matrix.shape} and {our_matrix.shape}"
    )


# --- the five data stages ------------------------------------------------------------------------


def run_measured(cmd, cwd):
    """Run cmd; return (wall seconds, peak resident memory in MiB, exit status) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode, err


def bench_stages(args, params):
    params = dict(params, ingest=dict(params["ingest"], source=str(Path(args.source).resolve())))
    with tempfile.TemporaryDirectory(prefix="bench_stages_") as tmp:
        Path(tmp, "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env_note = f"{usable_cores()} CPU cores this process may use"
        print(f"the five data stages on {args.source} in {tmp} ({env_note}):", flush=True)
        total, peak = 0.0, 0.0
        for stage in DATA_STAGES:
            command = [sys.executable, str(ROOT / "stages" / f"{stage}.py"), *stage_arguments(ROOT / "dvc.yaml", stage)]
            seconds, mib, code, err = run_measured(command, tmp)
            if code:
                print(f"  {stage} failed ({code}): {err.strip().splitlines()[-1] if err.strip() else ''}")
                return
            total, peak = total + seconds, max(peak, mib)
            print(f"  {stage:<13} {seconds:7.1f} s   peak {mib:7.0f} MiB")
        print(f"  {'all five':<13} {total:7.1f} s   peak {peak:7.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="aclImdb_v1.tar.gz or an aclImdb/ folder")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--limit", type=int, default=0, help="use the first N training reviews only")
    parser.add_argument("--stages", action="store_true", help="also time the five data stages on --source")
    args = parser.parse_args()

    if not args.source.exists():
        print(f"skipped: no dataset at {args.source} (pass --source path/to/aclImdb_v1.tar.gz)")
        return
    params = read_params(args.params)
    print(describe())
    bench_text(args, params)
    if args.stages:
        bench_stages(args, params)
    print(f"(this process: peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
