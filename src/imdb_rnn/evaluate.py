"""Score a checkpoint on the official test reviews: metrics, curves and per-review predictions.

A review is called positive when its logit is above 0 (probability above 0.5), as in training.
"""

import csv
import io
import time

import numpy as np

from .batches import Reviews
from .checkpoint import load_checkpoint
from .inference import accuracy, count_parameters, predict_logits
from .params import Param, load_section, retrain_hint
from .pipeline import PipelineError, load_npz, read_json, save_npz, write_json, write_text
from .runtime import configure_cpu, pick_device
from .text import without_known_words

EVALUATE_SCHEMA = {
    "batch_size": Param(int, min=1, max=65536),
    "device": Param(str, choices=("auto", "cpu", "cuda")),
    "threads": Param(int, min=0, max=256),  # 0 = every core this process may use (its CPU affinity)
    "curve_points": Param(int, min=2, max=100_000),  # points kept on each ROC / precision-recall curve
}
LABEL_NAMES = ("neg", "pos")


def checkpoint_field(payload, key, path):
    if key not in payload:
        raise PipelineError(
            f"checkpoint {path} has no '{key}' entry: retrain it ({retrain_hint(path, payload.get('arch'))})"
        )
    return payload[key]


def check_compatible(payload, meta, path):
    """Refuse a checkpoint whose vocabulary or text layout differs from the test data's (meta.json)."""
    missing = {"clean", "tokenize", "vocab_sha256"} - set(meta)
    if missing:
        raise PipelineError(
            f"tokenizer settings lack {sorted(missing)}: rerun the tokenize stage (dvc repro -f tokenize)"
        )
    fix = "retrain it (dvc repro) so that model and test data come from the same settings"
    if checkpoint_field(payload, "vocab_sha256", path) != meta["vocab_sha256"]:
        raise PipelineError(f"checkpoint {path} was trained with a different vocabulary than data/tokens: {fix}")
    if checkpoint_field(payload, "clean", path) != meta["clean"]:
        raise PipelineError(f"checkpoint {path} was trained on text cleaned differently ({payload['clean']}): {fix}")
    tokenize = checkpoint_field(payload, "tokenize", path)
    for key in ("pad_side", "truncate_side", "head_tokens"):
        if tokenize.get(key) != meta["tokenize"].get(key):
            raise PipelineError(
                f"checkpoint {path} has tokenize.{key}={tokenize.get(key)!r} but the test data has "
                f"{meta['tokenize'][key]!r}: {fix}"
            )
    seq_len, test_len = tokenize.get("seq_len"), meta["tokenize"]["seq_len"]
    if not isinstance(seq_len, int) or seq_len > test_len:
        raise PipelineError(
            f"checkpoint {path} reads {seq_len} tokens per review but the test data keeps only {test_len}: {fix}"
        )


def _rate(value):
    """A score for JSON: rounded, or None where it is undefined (NaN)."""
    return None if np.isnan(value) else round(float(value), 6)


def classification_metrics(labels, logits):
    """Threshold metrics, ROC AUC and log loss of logits against 0/1 labels.

    With only one class among the labels, ROC AUC (and the precision or recall that would
    divide by zero) is undefined: it is None and `single_class` says why.
    """
    labels = np.asarray(labels).astype(np.int64)
    logits = np.asarray(logits, np.float64)
    if len(labels) == 0:
        raise PipelineError("no reviews to score: the test set is empty")
    predicted = (logits > 0).astype(np.int64)
    single_class = len(np.unique(labels)) < 2
    # scikit-learn's import costs more than a second; check_params reads this module's schema without it
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    undefined = {"zero_division": np.nan}
    # from the logits, not probabilities: a confident logit rounds to probability 1.0 in floating point
    log_loss = np.logaddexp(0.0, -np.where(labels == 1, logits, -logits)).mean()
    return {
        "reviews": int(len(labels)),
        "accuracy": round(float(accuracy_score(labels, predicted)), 6),
        "precision": _rate(precision_score(labels, predicted, **undefined)),
        "recall": _rate(recall_score(labels, predicted, **undefined)),
        "f1": _rate(f1_score(labels, predicted, **undefined)),
        "roc_auc": None if single_class else round(float(roc_auc_score(labels, logits)), 6),
        "log_loss": round(float(log_loss), 6),
        "single_class": bool(single_class),  # True: ROC AUC and the curves are undefined
        "confusion": {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)},
    }


def unseen_metrics(labels, logits, in_train):
    """Accuracy on the test reviews whose text is not also a training review's (`in_train` [N] bool),
    and their count."""
    unseen = ~np.asarray(in_train, bool)
    return {
        "accuracy_unseen": round(accuracy(np.asarray(logits)[unseen], np.asarray(labels)[unseen]), 6)
        if unseen.any()
        else None,
        "test_reviews_in_train": int((~unseen).sum()),
    }


def save_predictions(path, logits, labels, review_ids):
    """Per-review logits [N] (float32), 0/1 labels [N] and aclImdb review ids [N] of the official test
    reviews, in test.npz's order: what the compare stage's intervals and paired tests are computed
    from, and what lets them check that two files hold the same reviews (compare.same_reviews)."""
    save_npz(
        path,
        logits=np.asarray(logits, np.float32),
        labels=np.asarray(labels, np.int8),
        review_ids=np.asarray(review_ids, np.int64),
    )


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, np.float64), -500, 500)))


def thin(n, max_points):
    """Indices of at most max_points of n points, evenly spread and keeping both ends."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def roc_points(labels, logits, max_points):
    """ROC curve rows {fpr, tpr, threshold (probability)}; empty when only one class is present."""
    if len(np.unique(labels)) < 2:
        return []
    from sklearn.metrics import roc_curve  # imported here: see classification_metrics

    fpr, tpr, thresholds = roc_curve(labels, logits)
    keep = thin(len(fpr), max_points)
    probability = sigmoid(thresholds)  # the first threshold is +inf: probability 1
    return [{"fpr": fpr[i], "tpr": tpr[i], "threshold": probability[i]} for i in keep]


def precision_recall_points(labels, logits, max_points):
    """Precision-recall rows {recall, precision, threshold} by rising recall; empty for one class."""
    if len(np.unique(labels)) < 2:
        return []
    from sklearn.metrics import precision_recall_curve  # imported here: see classification_metrics

    precision, recall, thresholds = precision_recall_curve(labels, logits)
    # the last point (recall 0, precision 1) has no threshold: nothing is called positive
    probability = np.append(sigmoid(thresholds), 1.0)
    keep = thin(len(recall), max_points)[::-1]
    return [{"recall": recall[i], "precision": precision[i], "threshold": probability[i]} for i in keep]


def confusion_rows(labels, logits):
    """One {actual, predicted} row per review, for DVC's confusion template."""
    labels = np.asarray(labels).astype(np.int64)
    predicted = (np.asarray(logits) > 0).astype(np.int64)
    return [{"actual": LABEL_NAMES[a], "predicted": LABEL_NAMES[p]} for a, p in zip(labels, predicted)]


def to_csv(rows, columns):
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(float(v), 6) if isinstance(v, (float, np.floating)) else v for k, v in row.items()})
    return out.getvalue()


def evaluate(model, payload, reviews, batch_size, device, path):
    """Score `reviews` with the checkpoint's `model`; return (metrics, logits, 0/1 labels)."""
    train_seconds = checkpoint_field(payload, "metrics", path).get("train_seconds")
    if train_seconds is None:
        raise PipelineError(
            f"checkpoint {path} does not record its training time: "
            f"retrain it ({retrain_hint(path, payload.get('arch'))})"
        )
    start = time.perf_counter()  # throughput counts the model's work only, not loading
    logits = predict_logits(model, reviews, batch_size, device)
    seconds = time.perf_counter() - start
    labels = (reviews.labels > 0.5).astype(np.int64)
    trained = checkpoint_field(payload, "metrics", path)
    metrics = {
        "arch": payload.get("arch"),
        "seed": trained.get("seed"),
        **classification_metrics(labels, logits),
        # the checkpoint's own: the compare stage picks each architecture's seed by it, never by test
        "val_accuracy": trained.get("val_accuracy"),
        # the official test set is scored whole: these are read as one <unk> (docs/bad-input.md)
        "reviews_without_known_words": int(without_known_words(reviews.ids).sum()),
        "parameters": count_parameters(model),
        "train_seconds": train_seconds,
        "inference_seconds": round(seconds, 3),
        "reviews_per_second": round(len(labels) / max(seconds, 1e-9), 1),
        "device": str(device),
    }
    return metrics, logits, labels


def evaluate_checkpoint(name, params_path, paths):
    """The evaluate stage: score architecture `name`'s checkpoint on every official test review.

    `paths` maps checkpoint, test, meta (inputs) and metrics, predictions, roc, pr, confusion (outputs) to files,
    as dvc.yaml names them. Everything is computed before the first write, so a failure (a
    PipelineError) leaves no partial results.
    """
    settings = load_section(params_path, "evaluate", EVALUATE_SCHEMA)
    configure_cpu(settings["threads"])
    device = pick_device(settings["device"])
    meta = read_json(paths["meta"], "tokenizer settings")
    checkpoint = paths["checkpoint"]
    model, payload = load_checkpoint(checkpoint, device)
    if payload.get("arch") != name:
        raise PipelineError(f"checkpoint {checkpoint} holds architecture {payload.get('arch')!r}, not {name!r}")
    check_compatible(payload, meta, checkpoint)
    tokenize = payload["tokenize"]
    test = load_npz(paths["test"], "tokenized test set")  # read once: the reviews and their in_train flags
    missing = {"ids", "lengths", "labels", "review_ids", "in_train"} - set(test)
    if missing:
        raise PipelineError(
            f"tokenized test set {paths['test']} lacks {sorted(missing)}: rerun the tokenize stage (dvc repro)"
        )
    reviews = Reviews.from_arrays(test, tokenize, tokenize["seq_len"])
    if reviews.ids.shape[1] < tokenize["seq_len"]:
        raise PipelineError(
            f"{paths['test']} holds {reviews.ids.shape[1]} tokens per review but {paths['meta']} says "
            f"{meta['tokenize']['seq_len']}: rerun the tokenize stage (dvc repro -f tokenize)"
        )

    metrics, logits, labels = evaluate(model, payload, reviews, settings["batch_size"], device, checkpoint)
    metrics.update(unseen_metrics(labels, logits, test["in_train"]))
    points = settings["curve_points"]
    outputs = {
        paths["roc"]: to_csv(roc_points(labels, logits, points), ["fpr", "tpr", "threshold"]),
        paths["pr"]: to_csv(precision_recall_points(labels, logits, points), ["recall", "precision", "threshold"]),
        paths["confusion"]: to_csv(confusion_rows(labels, logits), ["actual", "predicted"]),
    }
    for path, text in outputs.items():
        write_text(path, text)
    save_predictions(paths["predictions"], logits, labels, test["review_ids"])
    write_json(paths["metrics"], metrics)
    auc = "undefined (one class)" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
    print(
        f"{name}: test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']}, ROC AUC {auc}, "
        f"{metrics['reviews_per_second']:.0f} reviews/s on {metrics['device']}"
    )
