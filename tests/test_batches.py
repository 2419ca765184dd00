"""Token arrays in memory: cutting reviews to an architecture's max_len, loading a split, batches."""

import numpy as np
import pytest

from imdb_rnn.batches import Reviews, align_left, bucketed, by_length, cut
from imdb_rnn.pipeline import save_npz
from imdb_rnn.text import pad

# three left-aligned reviews of 4, 2 and 6 tokens
IDS = np.array([[5, 6, 7, 8, 0, 0], [1, 2, 0, 0, 0, 0], [3, 4, 5, 6, 7, 9]], np.int32)
LENGTHS = np.array([4, 2, 6])


@pytest.mark.parametrize(
    "side, expected",
    [
        ("right", [[5, 6, 7], [1, 2, 0], [3, 4, 5]]),  # keeps the head
        ("left", [[6, 7, 8], [1, 2, 0], [6, 7, 9]]),
    ],
)  # keeps the tail
def test_cut_drops_tokens_from_the_side_tokenize_truncates(side, expected):
    ids, kept = cut(IDS, LENGTHS, 3, side)
    assert ids.tolist() == expected and kept.tolist() == [3, 2, 3]
    assert IDS[2].tolist() == [3, 4, 5, 6, 7, 9]  # the input is left as it was


def test_cut_to_the_full_width_changes_nothing():
    for max_len in (6, 7):
        ids, kept = cut(IDS, LENGTHS, max_len, "left")
        assert ids is IDS and kept is LENGTHS


def test_cut_keeps_head_and_tail_as_tokenize_does():
    ids, kept = cut(IDS, LENGTHS, 3, "both", head_tokens=1)
    assert ids.tolist() == [[5, 7, 8], [1, 2, 0], [3, 7, 9]] and kept.tolist() == [3, 2, 3]


@pytest.mark.parametrize("pad_side", ["left", "right"])
@pytest.mark.parametrize("truncate_side", ["left", "right", "both"])
def test_cut_equals_tokenizing_at_the_shorter_length(pad_side, truncate_side):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 30, 40)
    flat = rng.integers(2, 100, int(lengths.sum())).astype(np.int32)
    wide, kept = pad(flat, lengths, 24, pad_side, truncate_side, head_tokens=4)
    for max_len in (1, 5, 23):
        narrow, narrow_kept = pad(flat, lengths, max_len, pad_side, truncate_side, head_tokens=4)
        ids, cut_kept = cut(align_left(wide, kept, pad_side), kept, max_len, truncate_side, head_tokens=4)
        assert cut_kept.tolist() == narrow_kept.tolist()
        assert ids.tolist() == align_left(narrow, narrow_kept, pad_side).tolist()


@pytest.mark.parametrize("pad_side", ["left", "right"])
@pytest.mark.parametrize("truncate_side, middle", [("left", [13, 14, 15, 16]), ("right", [12, 13, 14, 15])])
def test_load_aligns_cuts_and_keeps_labels(tmp_path, pad_side, truncate_side, middle):
    lengths = np.array([2, 5, 1], np.int32)
    flat = np.arange(10, 18, dtype=np.int32)
    matrix, kept = pad(flat, lengths, 6, pad_side, truncate_side)
    save_npz(tmp_path / "part.npz", ids=matrix, lengths=kept, labels=np.array([1, 0, 1], np.int8))
    reviews = Reviews.load(tmp_path / "part.npz", {"pad_side": pad_side, "truncate_side": truncate_side}, 4, "split")
    assert reviews.ids.tolist() == [[10, 11, 0, 0], middle, [17, 0, 0, 0]]
    assert reviews.lengths.tolist() == [2, 4, 1] and reviews.lengths.dtype == np.int64
    assert reviews.labels.tolist() == [1.0, 0.0, 1.0] and reviews.labels.dtype == np.float32
    assert reviews.tokens() == 7 and reviews.tokens([0, 2]) == 3


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(Exception, match=r"^validation split .*nowhere\.npz is missing"):
        Reviews.load(tmp_path / "nowhere.npz", {"pad_side": "left", "truncate_side": "right"}, 3, "validation split")
    save_npz(tmp_path / "part.npz", ids=np.ones((2, 3), np.int32), labels=np.zeros(2, np.int8))
    with pytest.raises(Exception, match=r"training split .*part\.npz lacks \['lengths'\]: rerun the tokenize stage"):
        Reviews.load(tmp_path / "part.npz", {"pad_side": "left", "truncate_side": "right"}, 3, "training split")


def test_a_batch_is_trimmed_to_its_longest_review():
    reviews = Reviews(IDS, LENGTHS, np.array([1, 0, 1]))
    ids, lengths, labels = reviews.batch(np.array([1, 0]), "cpu")
    assert ids.tolist() == [[1, 2, 0, 0], [5, 6, 7, 8]] and lengths.tolist() == [2, 4] and labels.tolist() == [0.0, 1.0]
    assert [b.tolist() for b in by_length(LENGTHS, 2)] == [[1, 0], [2]]


def test_bucketed_batches_cover_every_review_once_in_length_runs_of_each_pool():
    n, batch_size, pool_batches = 1000, 8, 5
    lengths = np.random.default_rng(1).permutation(n)  # distinct lengths: runs are unambiguous
    batches = bucketed(lengths, batch_size, np.random.default_rng(7), pool_batches)
    # an epoch: every review exactly once, in full batches (1000 reviews = 25 pools of 5 batches of 8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(n))
    assert [len(b) for b in batches] == [batch_size] * (n // batch_size)
    # each batch is a run of neighbouring lengths within its pool (the pools: the epoch's shuffle, cut)
    perm = np.random.default_rng(7).permutation(n)
    pools = [set(perm[i : i + batch_size * pool_batches].tolist()) for i in range(0, n, batch_size * pool_batches)]
    pool_of = []
    for batch in batches:
        (k,) = [k for k, p in enumerate(pools) if batch[0] in p]
        assert set(batch.tolist()) <= pools[k]
        low, high = lengths[batch].min(), lengths[batch].max()
        assert sum(low <= lengths[r] <= high for r in pools[k]) == batch_size
        pool_of.append(k)
    assert pool_of != sorted(pool_of)  # the batches themselves come shuffled, not pool by pool
