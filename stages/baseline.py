"""Stage baseline: an NBSVM-style n-gram logistic regression, C chosen on validation, scored on the test reviews."""

import argparse

from imdb_rnn.artifacts import load_npz, run_main, write_json, write_text
from imdb_rnn.baseline import (
    SCHEMA,
    check_parts,
    check_settings,
    parameter_count,
    part_of_split,
    score,
    select_C,
    select_rows,
)
from imdb_rnn.evaluate import classification_metrics, precision_recall_points, roc_points, to_csv
from imdb_rnn.ingest import read_table
from imdb_rnn.params import load_section

NAME = "baseline"  # its row in the leaderboard


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reviews", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--timing", required=True)
    parser.add_argument("--roc", required=True)
    parser.add_argument("--pr", required=True)
    args = parser.parse_args()

    settings = check_settings(load_section(args.params, NAME, SCHEMA))
    train_arrays = load_npz(args.train, "training split")
    valid_arrays = load_npz(args.valid, "validation split")
    table = read_table(args.reviews, columns=["id", "split", "label", "text"])
    pool = part_of_split(table, "train")
    train = select_rows(pool, train_arrays, args.train, args.reviews)
    valid = select_rows(pool, valid_arrays, args.valid, args.reviews)
    test = part_of_split(table, "test")
    del table, pool, train_arrays, valid_arrays
    check_parts(train, valid, test, {"train": args.train, "valid": args.valid, "reviews": args.reviews})

    chosen = select_C(train, valid, settings)  # the test reviews play no part in the choice
    logits, seconds = score(chosen, test)
    metrics = {
        "arch": NAME,
        **classification_metrics(test.labels, logits),
        "parameters": parameter_count(chosen.model),
        "features": chosen.featuriser.n_features,
        "train_seconds": round(chosen.train_seconds, 1),
        "final_fit_seconds": round(chosen.final_fit_seconds, 1),
        "inference_seconds": round(seconds, 3),
        "reviews_per_second": round(len(test.labels) / max(seconds, 1e-9), 1),
        "device": "cpu",
        "C": chosen.C,
        "val_accuracy": round(chosen.val_accuracy, 6),
        "C_grid": chosen.grid,
    }
    timing = {
        "arch": NAME,
        "train_seconds": metrics["train_seconds"],
        "seconds_per_epoch": None,  # not trained in epochs
        "tokens_per_second": None,
        "device": "cpu",
        "threads": 1,  # liblinear is single-threaded
    }
    points = settings["curve_points"]
    # everything is computed before the first write: a failure leaves no partial results
    outputs = {
        args.roc: to_csv(roc_points(test.labels, logits, points), ["fpr", "tpr", "threshold"]),
        args.pr: to_csv(precision_recall_points(test.labels, logits, points), ["recall", "precision", "threshold"]),
    }
    for path, text in outputs.items():
        write_text(path, text)
    write_json(args.timing, timing)
    write_json(args.metrics, metrics)
    print(
        f"{NAME}: C={chosen.C:g} (validation accuracy {chosen.val_accuracy:.4f}), test accuracy {metrics['accuracy']:.4f}, "
        f"F1 {metrics['f1']}, ROC AUC {metrics['roc_auc']}, {metrics['features']:,} features, "
        f"fit {metrics['train_seconds']}s, {metrics['reviews_per_second']:.0f} reviews/s"
    )


if __name__ == "__main__":
    run_main(main)
