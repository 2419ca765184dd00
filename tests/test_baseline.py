"""Baseline: NB log-count ratios by hand, C chosen on validation only, leaderboard-ready outputs, refusals."""

import csv
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import yaml
from conftest import assert_one_line_error, run_script, write_params

from imdb_rnn.baseline import Part, best_C, check_settings, log_count_ratio, part_of_split, select_C, select_rows
from imdb_rnn.compare import load_run, same_reviews
from imdb_rnn.pipeline import PipelineError, load_npz, read_json, save_npz

STAGE = Path(__file__).resolve().parents[1] / "stages" / "baseline.py"
# the section params.yaml is meant to carry; small C values are kept so that the choice matters on tiny data
BASELINE = {
    "ngram_max": 2,
    "min_df": 2,
    "binary": True,
    "nb_scaling": True,
    "C_grid": [0.01, 0.1, 1, 3],
    "max_iter": 1000,
    "curve_points": 50,
}


@pytest.fixture(scope="module")
def stage():
    """stages/baseline.py, run in this process (no second torch import)."""
    return STAGE


@pytest.fixture
def inputs(tiny_data, tmp_path):
    """Argument paths: tiny_data's inputs, outputs under tmp_path/out, and a params file with a baseline section."""
    params = yaml.safe_load((tiny_data / "params.yaml").read_text())
    params["baseline"] = dict(BASELINE)
    out = tmp_path / "out"
    return {
        "params": write_params(tmp_path / "params.yaml", params),
        "reviews": tiny_data / "data/clean/reviews.parquet",
        "train": tiny_data / "data/split/train.npz",
        "val": tiny_data / "data/split/val.npz",
        "metrics": out / "eval/baseline.json",
        "timing": out / "timing/baseline.json",
        "predictions": out / "predictions/baseline.npz",
        "roc": out / "roc/baseline.csv",
        "pr": out / "precision_recall/baseline.csv",
    }


def argv(paths):
    return [f"--{key}={value}" for key, value in paths.items()]


def run_in_process(stage, monkeypatch, capsys, paths):
    """Run the stage's main() as its __main__ block does (run_main); return a CompletedProcess look-alike."""
    monkeypatch.setattr(sys, "argv", [str(STAGE), *argv(paths)])
    try:
        runpy.run_path(str(stage), run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def parts(tiny_data):
    table = pq.read_table(tiny_data / "data/clean/reviews.parquet")
    pool = part_of_split(table, "train")
    split = tiny_data / "data/split"
    return (
        select_rows(pool, load_npz(split / "train.npz"), "train.npz", "reviews"),
        select_rows(pool, load_npz(split / "val.npz"), "val.npz", "reviews"),
    )


# --- the pieces ----------------------------------------------------------------------------


def test_log_count_ratio_matches_hand_computation():
    # features: a (both classes), b (positive only), c (negative only)
    counts = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 0, 1]], np.float32))
    r = log_count_ratio(counts, np.array([1, 1, 0]), alpha=1.0)
    p = np.array([3, 3, 1]) / 7  # 1 + sums over the two positive rows
    q = np.array([2, 1, 2]) / 5
    np.testing.assert_allclose(r, np.log(p / q), rtol=1e-6)
    assert r[1] > 0 > r[2]


def test_best_C_takes_the_highest_accuracy_and_ties_go_to_the_smaller_C():
    assert best_C({0.1: 0.80, 1.0: 0.90, 3.0: 0.85}) == 1.0
    assert best_C({3.0: 0.9, 0.3: 0.9, 1.0: 0.9}) == 0.3


@pytest.mark.parametrize("grid", [[], [0.1, 0], [1, -3], [True], ["1"]])
def test_a_C_grid_that_is_empty_or_not_positive_is_refused(grid):
    with pytest.raises(PipelineError, match="baseline.C_grid"):
        check_settings({**BASELINE, "C_grid": grid})


def test_select_C_keeps_the_C_best_on_the_validation_labels(tiny_data):
    train, val = parts(tiny_data)
    # a tenth of the training labels flipped and no NB scaling: C then matters on the tiny data
    flip = np.random.default_rng(0).choice(len(train.labels), len(train.labels) // 10, replace=False)
    labels = train.labels.copy()
    labels[flip] = 1 - labels[flip]
    noisy = Part(train.ids, train.texts, labels)
    settings = check_settings({**BASELINE, "nb_scaling": False, "min_df": 1, "C_grid": [100, 0.001, 0.01, 0.1, 1, 10]})

    chosen = select_C(noisy, val, settings)
    assert [row["C"] for row in chosen.grid] == sorted(settings["C_grid"])
    scores = {row["C"]: row["val_accuracy"] for row in chosen.grid}
    assert len(set(scores.values())) > 1, "the tiny data no longer makes C matter"
    assert chosen.C == best_C(scores) and chosen.val_accuracy == pytest.approx(scores[chosen.C], abs=1e-6)

    # the same fits scored against the opposite validation labels: complementary accuracies, another C
    flipped = select_C(noisy, Part(val.ids, val.texts, 1 - val.labels), settings)
    for row, other in zip(chosen.grid, flipped.grid):
        assert other["val_accuracy"] == pytest.approx(1 - row["val_accuracy"], abs=1e-6)
    assert flipped.C == best_C({c: 1 - a for c, a in scores.items()}) != chosen.C


# --- the stage -----------------------------------------------------------------------------


def test_stage_scores_the_test_reviews_in_the_leaderboard_format(inputs):
    result = run_script(STAGE, *argv(inputs), cwd=inputs["params"].parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("baseline: C=") and len(result.stdout.splitlines()) == 1

    metrics = read_json(inputs["metrics"])
    assert metrics["reviews"] == 120  # every test review of the tiny archive
    assert metrics["accuracy"] > 0.9  # the labels are carried by marker words
    grid = {row["C"]: row["val_accuracy"] for row in metrics["C_grid"]}
    assert sorted(grid) == sorted(BASELINE["C_grid"])
    assert metrics["C"] == best_C(grid) and metrics["val_accuracy"] == grid[metrics["C"]]
    assert metrics["parameters"] == metrics["features"] + 1
    confusion = metrics["confusion"]
    assert confusion["tp"] + confusion["fn"] == 60 and confusion["tn"] + confusion["fp"] == 60

    # the test reviews in the order of tokenize's test.npz, which the evaluate stages score: compare pairs them
    tokens = np.load(inputs["reviews"].parents[2] / "data/tokens/test.npz")
    assert same_reviews(dict(np.load(inputs["predictions"])), {key: tokens[key] for key in ("review_ids", "labels")})

    # the leaderboard reads it like any architecture
    row = load_run(
        "baseline",
        None,
        {
            "eval_dir": inputs["metrics"].parent,
            "timing_dir": inputs["timing"].parent,
            "predictions_dir": inputs["predictions"].parent,
        },
    )
    assert row["arch"] == "baseline" and row["accuracy"] == metrics["accuracy"] == row["correct"].mean()
    assert metrics["test_reviews_in_train"] == 0 and metrics["accuracy_unseen"] == metrics["accuracy"]
    assert row["train_tokens_per_second"] is None and row["train_seconds"] == metrics["train_seconds"]
    assert row["inference_reviews_per_second"] == metrics["reviews_per_second"]
    timing = read_json(inputs["timing"])
    assert timing["seconds_per_epoch"] is None and timing["device"] == "cpu"
    assert timing["train_seconds"] == metrics["train_seconds"]

    roc, pr = read_csv(inputs["roc"]), read_csv(inputs["pr"])
    assert list(roc[0]) == ["fpr", "tpr", "threshold"] and list(pr[0]) == ["recall", "precision", "threshold"]
    assert 2 <= len(roc) <= BASELINE["curve_points"] and 2 <= len(pr) <= BASELINE["curve_points"]
    assert float(roc[-1]["fpr"]) == 1.0 and float(roc[-1]["tpr"]) == 1.0


def test_the_test_labels_play_no_part_in_choosing_C(stage, inputs, tmp_path, monkeypatch, capsys):
    assert run_in_process(stage, monkeypatch, capsys, inputs).returncode == 0
    honest = read_json(inputs["metrics"])

    # the same reviews with every test label swapped
    table = pq.read_table(inputs["reviews"])
    is_test = pc.equal(table["split"], "test")
    swapped = pc.if_else(pc.equal(table["label"], "pos"), "neg", "pos")
    labels = pc.if_else(is_test, swapped, table["label"])
    pq.write_table(
        table.set_column(table.schema.get_field_index("label"), "label", labels), tmp_path / "swapped.parquet"
    )
    seen = []

    def spy(train, val, settings):
        seen.append((train, val))
        return select_C(train, val, settings)

    monkeypatch.setattr("imdb_rnn.baseline.select_C", spy)
    other = {**inputs, "reviews": tmp_path / "swapped.parquet", "metrics": tmp_path / "swapped.json"}
    assert run_in_process(stage, monkeypatch, capsys, other).returncode == 0
    cheated = read_json(other["metrics"])

    def scores(metrics):
        return [(row["C"], row["val_accuracy"]) for row in metrics["C_grid"]]

    assert scores(cheated) == scores(honest)
    assert (cheated["C"], cheated["val_accuracy"]) == (honest["C"], honest["val_accuracy"])
    assert cheated["accuracy"] == pytest.approx(1 - honest["accuracy"], abs=1e-6)
    # and select_C saw exactly the split's training and validation reviews, in the split's order
    ((train, val),) = seen
    for part, name in ((train, "train"), (val, "val")):
        split = load_npz(inputs[name])
        np.testing.assert_array_equal(part.ids, split["review_ids"])
        np.testing.assert_array_equal(part.labels, split["labels"])


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reviews", "train", "val"])
def test_a_missing_input_is_a_one_line_error(stage, inputs, tmp_path, monkeypatch, capsys, name):
    missing = tmp_path / f"missing_{Path(inputs[name]).name}"
    result = run_in_process(stage, monkeypatch, capsys, {**inputs, name: missing})
    assert_one_line_error(result, str(missing), "dvc repro")
    assert not inputs["metrics"].exists()


def test_a_stale_split_is_a_one_line_error(stage, inputs, tmp_path, monkeypatch, capsys):
    arrays = load_npz(inputs["train"])
    arrays["review_ids"] = arrays["review_ids"] + 10_000  # ids the cleaned reviews do not hold
    save_npz(tmp_path / "stale.npz", **arrays)
    result = run_in_process(stage, monkeypatch, capsys, {**inputs, "train": tmp_path / "stale.npz"})
    assert_one_line_error(result, "stale.npz", "stale", "dvc repro")
    assert not inputs["metrics"].exists()


@pytest.mark.parametrize("grid", [[], [0.3, -1]])
def test_a_bad_C_grid_is_a_one_line_error(stage, inputs, tmp_path, monkeypatch, capsys, grid):
    params = yaml.safe_load(inputs["params"].read_text())
    params["baseline"]["C_grid"] = grid
    write_params(inputs["params"], params)
    result = run_in_process(stage, monkeypatch, capsys, inputs)
    assert_one_line_error(result, "baseline.C_grid", "positive")
