"""The real aclImdb archive (../shared/data/aclImdb_v1.tar.gz): skipped where it is absent.

One streaming read of the archive (about 7 s) serves every test here.
"""

import pyarrow.compute as pc
import pytest

from imdb_rnn.ingest import read_reviews
from imdb_rnn.text import clean_texts


@pytest.fixture(scope="module")
def real_reviews(real_archive):
    return read_reviews(str(real_archive))


def test_counts_per_split_and_label(real_reviews):
    table, report = real_reviews
    assert report["per_split"] == {"train": 25_000, "test": 25_000, "unsup": 50_000}
    assert report["per_label"] == {
        "test/neg": 12_500,
        "test/pos": 12_500,
        "train/neg": 12_500,
        "train/pos": 12_500,
        "unsup/none": 50_000,
    }
    assert table.num_rows == report["reviews"] == 100_000
    assert report["empty_files_dropped"] == 0 and report["invalid_utf8_bytes"] == 0


def test_ratings_match_labels(real_reviews):
    table, _ = real_reviews
    for label, (low, high) in {"pos": (7, 10), "neg": (1, 4)}.items():
        ratings = pc.filter(table["rating"], pc.equal(table["label"], label))
        bounds = pc.min_max(ratings).as_py()
        assert ratings.null_count == 0 and low <= bounds["min"] and bounds["max"] <= high, (label, bounds)
    unrated = pc.filter(table["rating"], pc.equal(table["label"], "none"))
    assert len(unrated) == unrated.null_count == 50_000  # ID_0.txt: no rating, not a rating of 0


def test_every_file_in_the_review_folders_is_a_review(real_reviews):
    _, report = real_reviews
    assert report["files_skipped"] == 0 and report["files_with_invalid_utf8_named"] == []


def test_normalised_text_keeps_no_windows_1252_leftovers_entities_or_invisible_marks(real_reviews):
    table, _ = real_reviews
    settings = {"normalize": True, "lowercase": True, "strip_html_breaks": True, "punctuation": "keep"}
    raw, cleaned = table["text"], clean_texts(table["text"], settings)
    leftovers = (
        "[\x80-\x9f\ufeff\u00ad\u200b\u2019\u00b4]|&(amp|quot|#\\d+);"  # the characters themselves: RE2 has no \\u
    )
    assert pc.sum(pc.match_substring_regex(raw, leftovers)).as_py() == 3_491  # reviews that hold them (measured)
    assert pc.sum(pc.match_substring_regex(cleaned, leftovers)).as_py() == 0


def test_every_review_has_its_movie_and_train_and_test_share_none(real_reviews):
    table, report = real_reviews
    assert set(report["movie_files"].values()) == {"ok"} and report["labelled_reviews_without_movie"] == 0
    assert report["movies"] == {"train": 3_456, "test": 3_581}
    movies = {
        split: set(pc.filter(table["movie"], pc.equal(table["split"], split)).to_pylist())
        for split in ("train", "test")
    }
    # aclImdb's README promises disjoint movies; one movie breaks it (split.group_by: movie copies the promise)
    assert len(movies["train"] & movies["test"]) == 1
    assert all(m.startswith("tt") for m in movies["train"])


def test_exact_duplicates_as_counted_for_the_comparison_issue(real_reviews):
    _, report = real_reviews
    assert report["duplicates"] == {
        "extra_copies_in_train": 96,
        "extra_copies_in_test": 199,
        "test_reviews_in_train": 123,
        "unsup_reviews_in_test": 270,
    }
