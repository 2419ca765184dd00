"""Seeded, shuffled, stratified train/validation split of the labelled training reviews."""

import math

import numpy as np

from .artifacts import load_npz, PipelineError, save_npz, write_json
from .params import load_section, Param
from .text import without_known_words

SCHEMA = {
    "val_fraction": Param(float, min=0.01, max=0.99),
    "seed": Param(int, min=0),
}


def stratified_split(labels, val_fraction, seed):
    """Return (train_idx, val_idx): each class is shuffled and split in the same proportion.

    The exercise cut its array at 75% after reading all positive reviews first, so its validation
    set was all negative; splitting each class separately keeps both parts balanced. Raises
    PipelineError when there are fewer than two classes, or a class too small for both parts.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise PipelineError("the training reviews hold only one class: they need both pos and neg")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in classes:
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        if n_val in (0, len(idx)):
            name = {0: "neg", 1: "pos"}.get(int(cls), str(cls))
            needed = math.ceil(0.5 / min(val_fraction, 1 - val_fraction))
            raise PipelineError(
                f"only {len(idx)} training review(s) of class {name}: split.val_fraction={val_fraction} leaves "
                f"{'validation' if n_val == 0 else 'training'} without any; a stratified split needs at least "
                f"{needed} per class (use more reviews)"
            )
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train, val = np.concatenate(train), np.concatenate(val)
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def split_reviews(params_path, paths):
    """The split stage: a seeded, shuffled, stratified train/validation split of the training reviews.

    `paths` maps train, out_dir, report to files, as dvc.yaml names them.
    """

    params = load_section(params_path, "split", SCHEMA)
    data = load_npz(paths['train'], "tokenized training set")
    # a review with no vocabulary word teaches nothing and tells nothing about a model: leave it out
    empty = without_known_words(data["ids"])
    data = {k: v[~empty] for k, v in data.items()}
    labels = data["labels"]
    train_idx, val_idx = stratified_split(labels, params["val_fraction"], params["seed"])
    report = {}
    for name, idx in (("train", train_idx), ("val", val_idx)):
        save_npz(f"{paths['out_dir']}/{name}.npz", **{k: v[idx] for k, v in data.items()})
        report[name] = {
            "reviews": int(len(idx)),
            "pos": int(labels[idx].sum()),
            "neg": int(len(idx) - labels[idx].sum()),
            "pos_fraction": round(float(labels[idx].mean()), 4),
        }
    report["balanced"] = abs(report["train"]["pos_fraction"] - report["val"]["pos_fraction"]) < 0.01
    report["dropped_without_known_words"] = int(empty.sum())
    write_json(paths['report'], report)
    print(f"split: {report}")
