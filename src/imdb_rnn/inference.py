"""Scoring reviews with a classifier, and the metrics training and evaluation share."""

import numpy as np
import torch
from torch import nn

from .batches import by_length


@torch.no_grad()
def predict_logits(model, reviews, batch_size, device, idx=None):
    """Logits [N] (float32 numpy) for every review of `reviews` (a batches.Reviews), or rows idx, in
    their original order; batches of about `batch_size` reviews of similar length."""
    model.eval()
    idx = np.arange(len(reviews)) if idx is None else np.asarray(idx)
    out = np.zeros(len(idx), np.float32)
    for rows in by_length(reviews.lengths[idx], batch_size):
        ids, lengths, _ = reviews.batch(idx[rows], device)
        out[rows] = model(ids, lengths).float().cpu().numpy()
    return out


def correct(logits, labels):
    """bool [N]: whether each review is on the right side, positive when its logit is above 0 (labels 0/1).
    The one decision rule of every accuracy, paired test and report in the project."""
    return (np.asarray(logits) > 0) == (np.asarray(labels) > 0.5)


def accuracy(logits, labels):
    """The share of reviews on the right side (`correct`)."""
    return float(np.mean(correct(logits, labels)))


def loss_and_accuracy(logits, labels):
    """(mean binary cross-entropy, accuracy) of logits [N] against 0/1 labels [N] (numpy float32)."""
    loss = nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return loss, accuracy(logits, labels)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
