"""Train/validation split: stratified, seeded, shuffled, balanced; never one class in validation."""

import json

import numpy as np
import pytest
from conftest import TINY_PER_LABEL, assert_one_line_error, repo_params, run_script, tiny_params, write_params

from imdb_rnn.pipeline import PipelineError, save_npz
from imdb_rnn.split import groups_of, split_indices, stratified_split


def exercise_labels(n_pos=1000, n_neg=1000):
    """Labels in the exercise's reading order: every positive review, then every negative one."""
    return np.array([1] * n_pos + [0] * n_neg, np.int8)


def test_the_exercise_cut_leaves_one_class_in_validation():
    labels = exercise_labels()
    assert set(labels[int(0.75 * len(labels)) :]) == {0}  # the bug this split exists to avoid
    # the project's split of the same labels: a quarter of each class in validation, not the tail
    train, val = stratified_split(labels, 0.25, seed=42)
    assert np.bincount(labels[val], minlength=2).tolist() == [250, 250]
    assert np.bincount(labels[train], minlength=2).tolist() == [750, 750]
    assert not np.array_equal(np.sort(val), np.arange(1500, 2000))


@pytest.mark.parametrize(
    "n_pos, n_neg, tolerance", [(1000, 1000, 0.01), (12500, 12500, 0.001), (30, 90, 0.03), (7, 5, 0.12)]
)
def test_stratified_partition(n_pos, n_neg, tolerance):
    labels = exercise_labels(n_pos, n_neg)
    train, val = stratified_split(labels, 0.25, seed=42)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    for cls, n in ((1, n_pos), (0, n_neg)):
        assert (labels[val] == cls).sum() == round(n * 0.25)
    assert set(labels[val]) == {0, 1} and set(labels[train]) == {0, 1}
    # the same class balance on both sides, up to rounding
    assert abs(labels[train].mean() - labels[val].mean()) <= tolerance


def test_balanced_data_gives_balanced_parts():
    train, val = stratified_split(exercise_labels(12500, 12500), 0.25, seed=42)
    labels = exercise_labels(12500, 12500)
    assert (len(train), len(val)) == (18750, 6250)
    assert labels[train].mean() == labels[val].mean() == 0.5


def test_seeded():
    labels = exercise_labels()
    a, b = stratified_split(labels, 0.25, seed=7), stratified_split(labels, 0.25, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = stratified_split(labels, 0.25, seed=8)
    assert not np.array_equal(a[1], c[1])


def test_shuffled():
    labels = exercise_labels()
    train, val = stratified_split(labels, 0.25, seed=42)
    for part in (train, val):
        assert not np.array_equal(part, np.sort(part))
        # the classes are interleaved, not one block after the other
        first_half = labels[part[: len(part) // 2]]
        assert 0.35 < first_half.mean() < 0.65


def test_stage_on_exercise_ordered_data(tmp_path):
    n = 400
    labels = exercise_labels(n // 2, n // 2)
    data = {
        "ids": np.arange(n * 5, dtype=np.int32).reshape(n, 5),
        "lengths": np.full(n, 5, np.int32),
        "labels": labels,
        "review_ids": np.arange(n, dtype=np.int32),
        "movies": np.array([f"tt{i // 4}" for i in range(n)]),
        "text_hashes": np.arange(n, dtype=np.int64),
    }
    save_npz(tmp_path / "tokens.npz", **data)
    write_params(tmp_path / "params.yaml", {"split": {"val_fraction": 0.25, "seed": 42, "group_by": "review"}})
    result = run_script("split", "--train", "tokens.npz", "--out-dir", "split", "--report", "split.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "split.json").read_text())
    assert {k: report["val"][k] for k in ("reviews", "pos", "neg", "pos_fraction")} == {
        "reviews": 100,
        "pos": 50,
        "neg": 50,
        "pos_fraction": 0.5,
    }
    assert {k: report["train"][k] for k in ("reviews", "pos", "neg", "pos_fraction")} == {
        "reviews": 300,
        "pos": 150,
        "neg": 150,
        "pos_fraction": 0.5,
    }
    assert report["balanced"]
    parts = {name: dict(np.load(tmp_path / f"split/{name}.npz")) for name in ("train", "val")}
    for part in parts.values():
        assert set(part) == set(data)
        # every row moved whole: ids, label and review id still belong together
        rid = part["review_ids"]
        assert np.array_equal(part["ids"], data["ids"][rid]) and np.array_equal(part["labels"], labels[rid])
    assert sorted(np.concatenate([p["review_ids"] for p in parts.values()]).tolist()) == list(range(n))

    # same params, same split
    again = run_script("split", "--train", "tokens.npz", "--out-dir", "again", "--report", "again.json", cwd=tmp_path)
    assert again.returncode == 0
    assert (tmp_path / "split/val.npz").read_bytes() == (tmp_path / "again/val.npz").read_bytes()


def test_stage_rejects_one_class(tmp_path):
    save_npz(
        tmp_path / "tokens.npz",
        ids=np.full((10, 3), 2, np.int32),
        lengths=np.full(10, 3, np.int32),
        labels=np.zeros(10, np.int8),
        movies=np.array(["tt1"] * 10),
        text_hashes=np.arange(10),
    )
    write_params(tmp_path / "params.yaml", {"split": repo_params()["split"]})
    result = run_script("split", "--train", "tokens.npz", "--out-dir", "split", "--report", "split.json", cwd=tmp_path)
    assert_one_line_error(result, "only one class")
    assert not (tmp_path / "split").exists()


@pytest.mark.parametrize("n_pos, fraction, part", [(1, 0.25, "validation"), (3, 0.9, "training")])
def test_too_few_reviews_of_a_class_names_the_class_and_the_count(n_pos, fraction, part):
    with pytest.raises(PipelineError) as err:
        stratified_split(exercise_labels(n_pos, 40), fraction, seed=0)
    assert str(err.value).startswith(
        f"only {n_pos} training review(s) of class pos: split.val_fraction={fraction} leaves {part} without any"
    )


@pytest.mark.parametrize("n_pos, fraction, needed", [(2, 0.25, 3), (1, 0.5, 2), (5, 0.1, 6)])
def test_the_minimum_named_is_the_real_minimum(n_pos, fraction, needed):
    with pytest.raises(PipelineError, match=f"needs at least {needed} per class"):
        stratified_split(exercise_labels(n_pos, 40), fraction, seed=0)
    stratified_split(exercise_labels(needed, 40), fraction, seed=0)  # that many is enough


def test_reviews_without_a_known_word_are_counted_and_left_out_of_training(tmp_path, archive_factory):
    nothing = {  # empty after cleaning, or only words too rare for the vocabulary
        "aclImdb/train/pos/900_9.txt": b"?!?! <br /><br /> ...",
        "aclImdb/train/neg/901_2.txt": "\U0001f600 \u2605".encode(),
        "aclImdb/train/neg/902_1.txt": b"zyxwv qwrtp",
        "aclImdb/test/pos/903_8.txt": b"&amp; --",
    }
    archive = archive_factory(per_label=20, unsup=0, extra=nothing)
    params = tiny_params(archive)
    params["vocab"]["min_freq"] = 2  # zyxwv and qwrtp occur once
    write_params(tmp_path / "params.yaml", params)
    for stage in ("ingest", "clean", "vocab", "tokenize_pad", "split"):
        result = run_script(stage, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "metrics/tokenize.json").read_text())
    assert (summary["train"]["no_words"], summary["train"]["no_known_words"]) == (2, 3)
    assert (summary["test"]["no_words"], summary["test"]["no_known_words"]) == (1, 1)
    report = json.loads((tmp_path / "metrics/split.json").read_text())
    assert report["dropped_without_known_words"] == 3
    assert report["train"]["reviews"] + report["val"]["reviews"] == 40
    kept = {
        (int(r), int(y))
        for name in ("train", "val")
        for r, y in zip(*(np.load(tmp_path / f"data/split/{name}.npz")[k] for k in ("review_ids", "labels")))
    }
    assert not kept & {(900, 1), (901, 0), (902, 0)}
    assert len(np.load(tmp_path / "data/tokens/test.npz")["labels"]) == 41  # the official test set stays whole


def grouped_data(n_movies=1000, seed=0):
    """Training arrays shaped like aclImdb's: movies of 1-30 reviews with a movie-dependent share of positives,
    and some exact duplicate texts, a few of them across movies."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 31, n_movies)
    movies = np.repeat([f"tt{m:07d}" for m in range(n_movies)], sizes)
    share = np.repeat(rng.uniform(0.1, 0.9, n_movies), sizes)
    labels = (rng.uniform(size=len(movies)) < share).astype(np.int8)
    hashes = np.arange(len(movies), dtype=np.int64)
    copies = rng.choice(len(movies), 60, replace=False)
    hashes[copies[:30]] = hashes[copies[30:]]  # 30 texts twice, mostly in two different movies
    return {"labels": labels, "movies": movies, "text_hashes": hashes}


@pytest.mark.parametrize("group_by", ["review", "movie"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_groupings_are_stratified_deterministic_and_keep_duplicates_together(group_by, seed):
    data = grouped_data(seed=seed)
    train, val = split_indices(data, 0.25, seed, group_by)
    labels, movies, hashes = data["labels"], data["movies"], data["text_hashes"]
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert abs(len(val) / len(labels) - 0.25) < 0.01
    assert abs(labels[train].mean() - labels[val].mean()) < 0.01  # stratified within 1 point
    assert not np.intersect1d(hashes[train], hashes[val]).size  # every copy of a text on one side
    shared_movies = np.intersect1d(movies[train], movies[val]).size
    if group_by == "movie":
        assert shared_movies == 0
    else:
        assert shared_movies > 100  # a split over reviews spreads most movies over both sides
    again = split_indices(data, 0.25, seed, group_by)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    other = split_indices(data, 0.25, seed + 10, group_by)
    assert not np.array_equal(np.sort(other[1]), np.sort(val))


def test_a_text_shared_by_two_movies_joins_them_into_one_group():
    hashes = np.array([1, 2, 3, 3, 4])
    movies = np.array(["a", "a", "b", "c", "c"])
    by_review = groups_of(hashes)
    assert by_review[2] == by_review[3] and len(set(by_review)) == 4
    by_movie = groups_of(hashes, movies)
    assert by_movie[0] == by_movie[1] and by_movie[2] == by_movie[3] == by_movie[4] and by_movie[0] != by_movie[2]


def test_group_by_movie_without_movies_is_a_one_line_error(tmp_path):
    data = {
        "ids": np.full((40, 3), 2, np.int32),
        "lengths": np.full(40, 3, np.int32),
        "labels": np.arange(40) % 2,
        "movies": np.array(["tt1"] * 30 + [""] * 10),
        "text_hashes": np.arange(40),
    }
    save_npz(tmp_path / "tokens.npz", **data)
    write_params(tmp_path / "params.yaml", {"split": {"val_fraction": 0.25, "seed": 0, "group_by": "movie"}})
    result = run_script("split", "--train", "tokens.npz", "--out-dir", "split", "--report", "split.json", cwd=tmp_path)
    assert_one_line_error(result, "split.group_by is movie but 10 training review(s) have no movie")
    assert "split.group_by: review" in result.stderr
    assert not (tmp_path / "split").exists()


def test_an_unknown_group_by_is_refused(tmp_path):
    write_params(tmp_path / "params.yaml", {"split": {"val_fraction": 0.25, "seed": 0, "group_by": "film"}})
    result = run_script("split", "--train", "tokens.npz", "--out-dir", "split", "--report", "split.json", cwd=tmp_path)
    assert_one_line_error(result, "split.group_by")


def test_the_split_stage_by_movie_on_the_tiny_archive(tmp_path, tiny_archive):
    params = tiny_params(tiny_archive)
    params["split"]["group_by"] = "movie"
    write_params(tmp_path / "params.yaml", params)
    for stage in ("ingest", "clean", "vocab", "tokenize_pad", "split"):
        result = run_script(stage, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics/split.json").read_text())
    assert report["group_by"] == "movie"
    assert report["movie_overlap"] == {"movies_on_both_sides": 0, "val_reviews_of_a_training_movie": 0.0}
    assert report["train"]["movies"] + report["val"]["movies"] == TINY_PER_LABEL // 4
    assert report["balanced"] and report["duplicates"]["texts_on_both_sides"] == 0


def movie_tokens(tmp_path, pos_movies, pos_per_movie, n_neg, val_fraction=0.25):
    """tokens.npz with `pos_movies` movies of `pos_per_movie` positive reviews each and `n_neg`
    one-review negative movies."""
    n_pos = pos_movies * pos_per_movie
    n = n_pos + n_neg
    save_npz(
        tmp_path / "tokens.npz",
        ids=np.full((n, 3), 2, np.int32),
        lengths=np.full(n, 3, np.int32),
        labels=np.array([1] * n_pos + [0] * n_neg, np.int8),
        review_ids=np.arange(n, dtype=np.int32),
        movies=np.array([f"tt{i // pos_per_movie}" for i in range(n_pos)] + [f"tn{i}" for i in range(n_neg)]),
        text_hashes=np.arange(n, dtype=np.int64),
    )
    write_params(tmp_path / "params.yaml", {"split": {"val_fraction": val_fraction, "seed": 0, "group_by": "movie"}})
    return run_script("split", "--train", "tokens.npz", "--out-dir", "split", "--report", "split.json", cwd=tmp_path)


@pytest.mark.parametrize("val_fraction, side", [(0.25, "validation"), (0.9, "training")])
def test_a_movie_split_that_leaves_a_side_one_class_is_a_one_line_error(tmp_path, val_fraction, side):
    # every positive review belongs to one movie: whole movies cannot put positives on both sides
    result = movie_tokens(tmp_path, pos_movies=1, pos_per_movie=40, n_neg=40, val_fraction=val_fraction)
    assert_one_line_error(
        result,
        f"split.val_fraction={val_fraction} leaves {side} without a pos review: all 40 lie in 1 movie(s)",
        "or split.group_by: review",
    )
    assert ("lower split.val_fraction" in result.stderr) == (side == "training")
    assert not (tmp_path / "split").exists() and not (tmp_path / "split.json").exists()


def test_copies_of_one_text_that_leave_a_side_one_class_are_refused_without_suggesting_the_grouping_in_use():
    labels = np.array([1] * 4 + [0] * 20)
    hashes = np.concatenate([np.zeros(4), np.arange(1, 21)])  # the 4 positive reviews are one text
    with pytest.raises(
        PipelineError,
        match=r"leaves validation without a pos review: all 4 lie in 1 group\(s\) of reviews with one text",
    ) as err:
        split_indices({"labels": labels, "text_hashes": hashes}, 0.25, 0, "review")
    assert "group_by" not in str(err.value)


def test_an_uneven_movie_split_is_written_with_a_warning(tmp_path):
    # positives come 15 to a movie: validation's target of 22 takes one movie, so it is 15 of 37 positive
    result = movie_tokens(tmp_path, pos_movies=6, pos_per_movie=15, n_neg=90)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "split.json").read_text())
    assert (report["val"]["pos"], report["val"]["neg"], report["balanced"]) == (15, 22, False)
    assert (
        "split: warning: validation is 40.5% positive and training 52.4%: whole movies could not be shared out evenly"
        in result.stderr
    )
    assert "(another split.seed may help), or split.group_by: review" in result.stderr
    even = movie_tokens(tmp_path, pos_movies=45, pos_per_movie=2, n_neg=90)  # 11 movies of 2 meet the target of 22
    assert even.returncode == 0 and "warning" not in even.stderr
    assert json.loads((tmp_path / "split.json").read_text())["balanced"]
