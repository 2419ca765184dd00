"""The real aclImdb archive (../shared/data/aclImdb_v1.tar.gz): skipped where it is absent.

One streaming read of the archive (about 7 s) serves every test here.
"""

import pyarrow.compute as pc
import pytest

from imdb_rnn.ingest import read_reviews


@pytest.fixture(scope="module")
def real_reviews(real_archive):
    return read_reviews(str(real_archive))


def test_counts_per_split_and_label(real_reviews):
    table, report = real_reviews
    assert report["per_split"] == {"train": 25_000, "test": 25_000, "unsup": 50_000}
    assert report["per_label"] == {
        "test/neg": 12_500, "test/pos": 12_500, "train/neg": 12_500, "train/pos": 12_500, "unsup/none": 50_000,
    }
    assert table.num_rows == report["reviews"] == 100_000
    assert report["empty_files_dropped"] == 0 and report["invalid_utf8_bytes"] == 0


def test_ratings_match_labels(real_reviews):
    table, _ = real_reviews
    for label, (low, high) in {"pos": (7, 10), "neg": (1, 4), "none": (0, 0)}.items():
        ratings = pc.filter(table["rating"], pc.equal(table["label"], label))
        bounds = pc.min_max(ratings).as_py()
        assert low <= bounds["min"] and bounds["max"] <= high, (label, bounds)
