"""Seeded, shuffled, stratified train/validation split of the labelled training reviews."""

import math

import numpy as np

from .artifacts import PipelineError
from .params import Param

SCHEMA = {
    "val_fraction": Param(float, min=0.01, max=0.99),
    "seed": Param(int, min=0),
}


def stratified_split(labels, val_fraction, seed):
    """Return (train_idx, valid_idx): each class is shuffled and split in the same proportion.

    The exercise cut its array at 75% after reading all positive reviews first, so its validation
    set was all negative; splitting each class separately keeps both parts balanced. Raises
    PipelineError when there are fewer than two classes, or a class too small for both parts.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise PipelineError("the training reviews hold only one class: they need both pos and neg")
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for cls in classes:
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_valid = int(round(len(idx) * val_fraction))
        if n_valid in (0, len(idx)):
            name = {0: "neg", 1: "pos"}.get(int(cls), str(cls))
            needed = math.ceil(0.5 / min(val_fraction, 1 - val_fraction))
            raise PipelineError(
                f"only {len(idx)} training review(s) of class {name}: split.val_fraction={val_fraction} leaves "
                f"{'validation' if n_valid == 0 else 'training'} without any; a stratified split needs at least "
                f"{needed} per class (use more reviews)"
            )
        valid.append(idx[:n_valid])
        train.append(idx[n_valid:])
    train, valid = np.concatenate(train), np.concatenate(valid)
    rng.shuffle(train)
    rng.shuffle(valid)
    return train, valid
