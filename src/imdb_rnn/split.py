"""Seeded, shuffled, stratified train/validation split of the labelled training reviews."""

import numpy as np

from .params import Param

SCHEMA = {
    "val_fraction": Param(float, min=0.01, max=0.99),
    "seed": Param(int, min=0),
}


def stratified_split(labels, val_fraction, seed):
    """Return (train_idx, valid_idx): each class is shuffled and split in the same proportion.

    The exercise cut its array at 75% after reading all positive reviews first, so its validation
    set was all negative; splitting each class separately keeps both parts balanced.
    """
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_valid = int(round(len(idx) * val_fraction))
        valid.append(idx[:n_valid])
        train.append(idx[n_valid:])
    train, valid = np.concatenate(train), np.concatenate(valid)
    rng.shuffle(train)
    rng.shuffle(valid)
    return train, valid
