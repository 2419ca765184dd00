"""Stage evaluate: score one architecture's checkpoint on every official test review."""

import argparse

from imdb_rnn.artifacts import PipelineError, read_json, run_main, write_json, write_text
from imdb_rnn.batches import Reviews
from imdb_rnn.evaluate import (
    EVALUATE_SCHEMA,
    check_compatible,
    confusion_rows,
    evaluate,
    precision_recall_points,
    roc_points,
    to_csv,
)
from imdb_rnn.params import load_section
from imdb_rnn.checkpoint import load_checkpoint
from imdb_rnn.runtime import configure_cpu, pick_device


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", required=True, help="the architecture whose checkpoint is scored")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--meta", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--roc", required=True)
    parser.add_argument("--pr", required=True)
    parser.add_argument("--confusion", required=True)
    args = parser.parse_args()
    name = args.arch
    checkpoint = args.checkpoint

    settings = load_section(args.params, "evaluate", EVALUATE_SCHEMA)
    configure_cpu(settings["threads"])
    device = pick_device(settings["device"])
    meta = read_json(args.meta, "tokenizer settings")
    model, payload = load_checkpoint(checkpoint, device)
    if payload.get("arch") != name:
        raise PipelineError(f"checkpoint {checkpoint} holds architecture {payload.get('arch')!r}, not {name!r}")
    check_compatible(payload, meta, checkpoint)
    tokenize = payload["tokenize"]
    reviews = Reviews.load(args.test, tokenize, tokenize["seq_len"], "tokenized test set")
    if reviews.ids.shape[1] < tokenize["seq_len"]:
        raise PipelineError(
            f"{args.test} holds {reviews.ids.shape[1]} tokens per review but {args.meta} says "
            f"{meta['tokenize']['seq_len']}: rerun the tokenize stage (dvc repro -f tokenize)"
        )

    metrics, logits, labels = evaluate(model, payload, reviews, settings["batch_size"], device, checkpoint)
    points = settings["curve_points"]
    # everything is computed before the first write: a failure leaves no partial results
    outputs = {
        args.roc: to_csv(roc_points(labels, logits, points), ["fpr", "tpr", "threshold"]),
        args.pr: to_csv(
            precision_recall_points(labels, logits, points), ["recall", "precision", "threshold"]
        ),
        args.confusion: to_csv(confusion_rows(labels, logits), ["actual", "predicted"]),
    }
    for path, text in outputs.items():
        write_text(path, text)
    write_json(args.metrics, metrics)
    auc = "undefined (one class)" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
    print(f"{name}: test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']}, ROC AUC {auc}, "
          f"{metrics['reviews_per_second']:.0f} reviews/s on {metrics['device']}")


if __name__ == "__main__":
    run_main(main)
