"""Compare two trained models on the same test reviews: the difference, its paired interval and McNemar's test.

The leaderboard tests every row against the top one; this answers the other questions, such as
"does word2vec help gru?", with the same statistics (imdb_rnn.significance) on the evaluate stage's
per-review predictions:

    python tools/paired.py gru gru_w2v                 # both at seed 42 (params.yaml's first seed)
    python tools/paired.py gru gru_w2v --seed 7
    python tools/paired.py baseline bilstm_w2v_adv     # the n-gram baseline has no seed

Prints each model's test accuracy, the difference (second minus first, in points) with a 95% paired
percentile bootstrap interval, and McNemar's exact p-value (two-sided, unadjusted: one question).
"""

import argparse
import sys
from pathlib import Path

from imdb_rnn.compare import check_same_reviews
from imdb_rnn.inference import correct
from imdb_rnn.params import BASELINE, first_seed
from imdb_rnn.pipeline import PipelineError, load_npz, run_main
from imdb_rnn.significance import mcnemar_exact, paired_difference


def predictions_of(name, seed, predictions_dir):
    """One model's predictions file (evaluate.save_predictions' arrays)."""
    where = Path(predictions_dir) / (f"{name}.npz" if name == BASELINE else f"{name}/seed{seed}.npz")
    if not where.exists():
        raise PipelineError(f"{where} is missing: run the pipeline (dvc repro) with {name} and seed {seed} first")
    return load_npz(where, "test predictions")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--seed", type=int, help="the training seed of both (default: params.yaml's first)")
    parser.add_argument("--predictions-dir", default="data/predictions")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    seed = first_seed() if args.seed is None else args.seed
    first, second = (predictions_of(name, seed, args.predictions_dir) for name in (args.first, args.second))
    check_same_reviews(first, second, args.first, args.second)
    a, b = (correct(p["logits"], p["labels"]) for p in (first, second))
    difference, low, high = paired_difference(b, a, args.resamples, 0.95, seed=0)
    print(f"{args.first}: {a.mean():.4f}  {args.second}: {b.mean():.4f}  (seed {seed}, {len(a):,} test reviews)")
    print(
        f"{args.second} - {args.first}: {100 * difference:+.2f} points [{100 * low:+.2f}, {100 * high:+.2f}] "
        f"(95% paired bootstrap, {args.resamples:,} resamples); McNemar p = {mcnemar_exact(a, b):.2g}"
    )


if __name__ == "__main__":
    sys.exit(run_main(main))
