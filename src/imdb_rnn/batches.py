"""Token arrays in memory, batched so that compute follows real review lengths."""

import numpy as np
import torch

from .pipeline import PipelineError, load_npz
from .text import kept_offsets


def align_left(ids, lengths, pad_side):
    """Move each row's real tokens to the front (the layout the model reads)."""
    if pad_side == "right":
        return ids
    seq_len = ids.shape[1]
    cols = (np.arange(seq_len)[None, :] + (seq_len - lengths)[:, None]) % seq_len
    return np.take_along_axis(ids, cols, axis=1)


def cut(ids, lengths, max_len, truncate_side, head_tokens=0):
    """Shorten left-aligned rows to max_len tokens, keeping what tokenize keeps (text.kept_offsets):
    the same as tokenizing with seq_len = max_len, since a row's head and tail hold the review's."""
    if max_len >= ids.shape[1]:
        return ids, lengths
    lengths = np.asarray(lengths, np.int64)
    kept = np.minimum(lengths, max_len)
    rows = np.repeat(np.arange(len(lengths)), kept)
    within = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    out = np.zeros((len(lengths), max_len), ids.dtype)
    out[rows, within] = ids[rows, kept_offsets(lengths, kept, truncate_side, head_tokens)]
    return out, kept


class Reviews:
    """Left-aligned token ids, lengths and labels of one split."""

    def __init__(self, ids, lengths, labels):
        self.ids, self.lengths, self.labels = ids, lengths.astype(np.int64), labels.astype(np.float32)
        if len(self.labels) == 0:
            raise PipelineError("the review set is empty: check the ingest and split reports")

    @classmethod
    def load(cls, path, tokenize_settings, max_len, what):
        data = load_npz(path, what)
        missing = {"ids", "lengths", "labels"} - set(data)
        if missing:
            raise PipelineError(f"{what} {path} lacks {sorted(missing)}: rerun the tokenize stage (dvc repro)")
        return cls.from_arrays(data, tokenize_settings, max_len)

    @classmethod
    def from_arrays(cls, data, tokenize_settings, max_len):
        """From the arrays the tokenize stage writes (ids [N, seq_len] padded as tokenize_settings say,
        lengths [N], labels [N]), read up to max_len tokens per review."""
        ids = align_left(data["ids"], data["lengths"], tokenize_settings["pad_side"])
        ids, lengths = cut(
            ids, data["lengths"], max_len, tokenize_settings["truncate_side"], tokenize_settings.get("head_tokens", 0)
        )
        return cls(ids, lengths, data["labels"])

    def __len__(self):
        return len(self.labels)

    def tokens(self, idx=None):
        return int(self.lengths.sum() if idx is None else self.lengths[idx].sum())

    def batch(self, idx, device):
        """Tensors for rows idx, trimmed to the longest review among them."""
        width = int(self.lengths[idx].max())
        ids = torch.from_numpy(self.ids[idx, :width].astype(np.int64))
        lengths = torch.from_numpy(self.lengths[idx])
        labels = torch.from_numpy(self.labels[idx])
        return ids.to(device), lengths.to(device), labels.to(device)


def bucketed(lengths, batch_size, rng, pool_batches=50):
    """Shuffled batches of similar length: shuffle, sort within pools of pool_batches batches, cut.

    Similar lengths in a batch mean few distinct lengths, so few recurrent spans per batch;
    the pools keep batches random from one epoch to the next.
    """
    perm = rng.permutation(len(lengths))
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(perm), pool):
        chunk = perm[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def by_length(lengths, batch_size):
    """Deterministic batches for scoring: all reviews sorted by length, then cut."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
