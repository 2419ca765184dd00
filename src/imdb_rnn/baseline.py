"""A bag-of-n-grams linear baseline (NBSVM-style) to put the recurrent models' accuracy in context.

Wang & Manning (2012) scale binary unigram+bigram features by the Naive Bayes log-count ratio
r = log((p / |p|_1) / (q / |q|_1)), with p and q the smoothed feature counts of the positive and
negative training reviews, and fit a linear classifier on the scaled features (NBSVM-bi: 91.22% on
IMDb). Here the classifier is scikit-learn's LogisticRegression, so its decision function is a
logit, exactly what the recurrent models' evaluation (imdb_rnn.evaluate) scores.

It learns from the same training split as the recurrent models (data/split/train.npz), picks C by
accuracy on the validation split (select_C never sees the test reviews), and is then scored once on
the official test reviews.
"""

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from .evaluate import (
    classification_metrics,
    precision_recall_points,
    roc_points,
    save_predictions,
    to_csv,
    unseen_metrics,
)
from .inference import accuracy
from .ingest import read_table
from .params import Param, load_section
from .pipeline import PipelineError, load_npz, write_json, write_text

SCHEMA = {
    "ngram_max": Param(int, min=1, max=3),  # n-grams from 1 to ngram_max words (2: unigrams + bigrams)
    "min_df": Param(int, min=1),  # an n-gram must occur in this many training reviews to be a feature
    "binary": Param(bool),  # presence (1) rather than count of each n-gram, as in NBSVM
    "nb_scaling": Param(bool),  # scale features by the Naive Bayes log-count ratio (false: plain logistic regression)
    "C_grid": Param(list),  # inverse regularisation strengths tried; the best on validation is kept
    "max_iter": Param(int, min=1),
    "curve_points": Param(int, min=2, max=100_000),  # points kept on the ROC / precision-recall curves
}
NB_ALPHA = 1.0  # Laplace smoothing of the Naive Bayes counts, as in Wang & Manning


@dataclass(frozen=True)
class Part:
    """The reviews of one split: parquet ids, cleaned texts and 0/1 labels, in the same order.

    (id, label) names a review within a split; the id alone does not (see select_rows).
    """

    ids: np.ndarray
    texts: list
    labels: np.ndarray
    hashes: np.ndarray | None = None  # of the texts as read (duplicates share one); None where the table has none


def check_settings(settings):
    """The params section with C_grid checked and sorted (ascending, so that ties go to the smaller C)."""
    grid = settings["C_grid"]
    if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid):
        raise PipelineError(f"parameter baseline.C_grid must be a non-empty list of positive numbers, got {grid!r}")
    return {**settings, "C_grid": sorted({float(c) for c in grid})}


def labels_of(column):
    """0/1 labels from the parquet's 'pos'/'neg' strings."""
    return (column.to_numpy(zero_copy_only=False) == "pos").astype(np.int64)


def part_of_split(table, split):
    """Every review of `split` ('train' or 'test') in the cleaned table, as a Part."""
    rows = table.filter(pc.equal(table["split"], split))
    hashes = rows["text_hash"].to_numpy() if "text_hash" in rows.column_names else None
    return Part(rows["id"].to_numpy().astype(np.int64), rows["text"].to_pylist(), labels_of(rows["label"]), hashes)


def select_rows(pool, split_arrays, split_path, reviews_path):
    """The reviews of `pool` (the training reviews) that a split file names, in its order.

    A review is named by (review_id, label): an id is the file's number inside its label's
    folder, so a positive and a negative review share each id. A split made from another version
    of the cleaned reviews names pairs that are absent: the split is stale.
    """
    stale = f"rerun dvc repro so that {split_path} comes from the current {reviews_path}"
    if "review_ids" not in split_arrays or "labels" not in split_arrays:
        raise PipelineError(f"{split_path} has no review_ids or labels: the split is stale, {stale}")
    position = {key: n for n, key in enumerate(zip(pool.ids.tolist(), pool.labels.tolist()))}
    wanted = list(zip(split_arrays["review_ids"].tolist(), split_arrays["labels"].astype(np.int64).tolist()))
    missing = sum(1 for key in wanted if key not in position)
    if missing:
        raise PipelineError(
            f"{missing} reviews of {split_path} are not training reviews of {reviews_path}: the split is stale, {stale}"
        )
    rows = np.array([position[key] for key in wanted], dtype=np.int64)
    return Part(pool.ids[rows], [pool.texts[i] for i in rows], pool.labels[rows])


def check_parts(train, val, test, paths):
    """Refuse splits that overlap or hold one class only: the fit or the choice of C would mean nothing."""
    shared = set(zip(train.ids.tolist(), train.labels.tolist())) & set(zip(val.ids.tolist(), val.labels.tolist()))
    if shared:
        raise PipelineError(
            f"{paths['train']} and {paths['val']} share {len(shared)} reviews: the split is stale, rerun dvc repro"
        )
    for part, name in ((train, paths["train"]), (val, paths["val"])):
        if len(np.unique(part.labels)) < 2:
            raise PipelineError(f"{name} holds {len(part.labels)} reviews of one class only: rerun dvc repro split")
    if not test.texts:
        raise PipelineError(f"{paths['reviews']} has no test reviews: check the ingest report (dvc repro)")


class Featuriser:
    """Binary (or count) n-gram features of whitespace-separated text, optionally NB-scaled.

    Fitted on the training reviews only: the vocabulary and the log-count ratios never see
    validation or test text.
    """

    def __init__(self, ngram_max, min_df, binary, nb_scaling):
        # scikit-learn's import costs more than a second; check_params reads this module's schema without it
        from sklearn.feature_extraction.text import CountVectorizer

        self.vectorizer = CountVectorizer(
            tokenizer=str.split,  # the clean stage already lowercased and split the words
            token_pattern=None,
            lowercase=False,
            ngram_range=(1, ngram_max),
            min_df=min_df,
            binary=binary,
            dtype=np.float32,
        )
        self.nb_scaling = nb_scaling
        self.ratio = None

    def fit_transform(self, texts, labels):
        try:
            counts = self.vectorizer.fit_transform(texts)
        except ValueError as err:  # e.g. min_df above every n-gram's document frequency
            raise PipelineError(f"no n-gram features from the training reviews ({err}): lower baseline.min_df")
        if self.nb_scaling:
            self.ratio = log_count_ratio(counts, labels)
        return self.scale(counts)

    def transform(self, texts):
        return self.scale(self.vectorizer.transform(texts))

    def scale(self, counts):
        return counts if self.ratio is None else counts.multiply(self.ratio).tocsr()

    @property
    def n_features(self):
        return len(self.vectorizer.vocabulary_)


def log_count_ratio(counts, labels, alpha=NB_ALPHA):
    """r = log((p/|p|_1) / (q/|q|_1)) with p, q the smoothed feature sums of positive, negative rows."""
    labels = np.asarray(labels)
    p = alpha + np.asarray(counts[labels == 1].sum(axis=0), np.float64).ravel()
    q = alpha + np.asarray(counts[labels == 0].sum(axis=0), np.float64).ravel()
    return np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)


def fit_classifier(features, labels, C, max_iter):
    """L2 logistic regression by liblinear's dual solver (fast when features outnumber reviews).

    liblinear visits the reviews in a random order: a fixed seed makes the fit repeatable.
    Returns (model, converged): a fit that stops at max_iter is kept but reported, not printed.
    """
    from sklearn.exceptions import ConvergenceWarning  # imported here: see Featuriser
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=max_iter, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, converged


def best_C(scores):
    """The C of highest validation accuracy in {C: accuracy}; ties go to the smaller C (stronger regularisation)."""
    return min(scores, key=lambda c: (-scores[c], c))


@dataclass
class Selection:
    featuriser: Featuriser
    model: object  # scikit-learn's LogisticRegression
    C: float
    val_accuracy: float
    grid: list  # one {C, val_accuracy, converged, fit_seconds} per C tried
    train_seconds: float  # featurising the training reviews + fitting every C (validation scoring excluded)
    final_fit_seconds: float  # fitting the chosen C alone


def select_C(train, val, settings):
    """Fit on `train` for every C of settings['C_grid'], keep the model most accurate on `val`.

    Takes the training and validation Parts only: the test reviews cannot influence the choice.
    """
    start = time.perf_counter()
    featuriser = Featuriser(settings["ngram_max"], settings["min_df"], settings["binary"], settings["nb_scaling"])
    train_features = featuriser.fit_transform(train.texts, train.labels)
    train_seconds = time.perf_counter() - start
    val_features = featuriser.transform(val.texts)
    models, scores, grid = {}, {}, []
    for C in settings["C_grid"]:
        start = time.perf_counter()
        model, converged = fit_classifier(train_features, train.labels, C, settings["max_iter"])
        seconds = time.perf_counter() - start
        train_seconds += seconds
        models[C] = (model, seconds)
        scores[C] = accuracy(model.decision_function(val_features), val.labels)
        grid.append(
            {"C": C, "val_accuracy": round(scores[C], 6), "converged": converged, "fit_seconds": round(seconds, 2)}
        )
    chosen = best_C(scores)
    model, seconds = models[chosen]
    return Selection(featuriser, model, chosen, scores[chosen], grid, train_seconds, seconds)


def score(selection, test):
    """Logits of the chosen model on the `test` Part and the seconds taken, featurisation included."""
    start = time.perf_counter()
    logits = selection.model.decision_function(selection.featuriser.transform(test.texts))
    return np.asarray(logits, np.float64), time.perf_counter() - start


def parameter_count(model):
    """Fitted weights: one per feature plus the bias.

    The NB ratios fold into the weights (x.(r*w) = (x*r).w), so they add no parameters.
    """
    return int(model.coef_.size + model.intercept_.size)


NAME = "baseline"  # its row in the leaderboard


def fit_baseline(params_path, paths):
    """The baseline stage: an NBSVM on the same split, C chosen on validation, scored on the test reviews.

    `paths` maps reviews, train, val, metrics, timing, predictions, roc, pr to files, as dvc.yaml names them.
    """

    settings = check_settings(load_section(params_path, NAME, SCHEMA))
    train_arrays = load_npz(paths["train"], "training split")
    val_arrays = load_npz(paths["val"], "validation split")
    table = read_table(paths["reviews"], columns=["id", "split", "label", "text", "text_hash"])
    pool = part_of_split(table, "train")
    train = select_rows(pool, train_arrays, paths["train"], paths["reviews"])
    val = select_rows(pool, val_arrays, paths["val"], paths["reviews"])
    test = part_of_split(table, "test")
    in_train = np.isin(test.hashes, pool.hashes)  # test reviews whose text is also a training review's
    del table, pool, train_arrays, val_arrays
    check_parts(train, val, test, {"train": paths["train"], "val": paths["val"], "reviews": paths["reviews"]})

    chosen = select_C(train, val, settings)  # the test reviews play no part in the choice
    logits, seconds = score(chosen, test)
    metrics = {
        "arch": NAME,
        **classification_metrics(test.labels, logits),
        **unseen_metrics(test.labels, logits, in_train),
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
        paths["roc"]: to_csv(roc_points(test.labels, logits, points), ["fpr", "tpr", "threshold"]),
        paths["pr"]: to_csv(precision_recall_points(test.labels, logits, points), ["recall", "precision", "threshold"]),
    }
    for path, text in outputs.items():
        write_text(path, text)
    save_predictions(paths["predictions"], logits, test.labels, test.ids)
    write_json(paths["timing"], timing)
    write_json(paths["metrics"], metrics)
    print(
        f"{NAME}: C={chosen.C:g} (validation accuracy {chosen.val_accuracy:.4f}), "
        f"test accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']}, ROC AUC {metrics['roc_auc']}, "
        f"{metrics['features']:,} features, "
        f"fit {metrics['train_seconds']}s, {metrics['reviews_per_second']:.0f} reviews/s"
    )
