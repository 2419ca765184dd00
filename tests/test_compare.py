"""Compare: the leaderboard's statistics, order and format, the picture, and missing or stale inputs."""

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import repo_params

from imdb_rnn.compare import best_model, format_duration, load_run, read_chapter
from imdb_rnn.pipeline import PipelineError, save_npz
from imdb_rnn.significance import accuracy_interval, adjust_p_values, mcnemar_exact, paired_difference

STAGE = Path(__file__).resolve().parents[1] / "stages" / "compare.py"
N = 2000  # test reviews
STATS = {"bootstrap_resamples": 1000, "confidence": 0.95, "alpha": 0.05, "correction": "holm", "seed": 0}

# arch: {seed: (test accuracy, validation accuracy)}, plus what does not vary by seed
RUNS = {
    "rnn": {42: (0.700, 0.71), 7: (0.720, 0.70)},
    "gru": {42: (0.880, 0.85), 7: (0.860, 0.87)},  # seed 7 has the better validation accuracy, seed 42 the better test
    "lstm": {42: (0.870, 0.86), 7: (0.875, 0.86)},
    "gru_w2v": {42: (0.890, 0.90), 7: (0.885, 0.89)},
    "baseline": {None: (0.900, 0.91)},  # the n-gram model: one fit, no seeds, no curves
}
OTHER = {  # arch: (f1, roc_auc, parameters, train_seconds, tokens/s, reviews/s)
    "rnn": (0.69, 0.77, 2_503_401, 45.25, 120_000.4, 9_000.6),
    "gru": (0.87, 0.95, 3_300_000, 725.0, 50_000.0, 3_000.0),
    "lstm": (0.86, None, 3_400_000, 4_000.0, 40_000.0, 2_500.0),
    "gru_w2v": (0.88, 0.96, 3_300_000, 700.0, 51_000.0, 3_000.0),
    "baseline": (0.90, 0.97, 346_134, 11.0, None, 3_100.0),
}
LABELS = np.random.default_rng(1).integers(0, 2, N).astype(np.int8)


def logits_with_accuracy(accuracy, seed):
    """Logits right on exactly round(accuracy * N) of the reviews, which ones drawn by `seed`."""
    right = np.zeros(N, bool)
    right[np.random.default_rng(seed).permutation(N)[: round(accuracy * N)]] = True
    sign = np.where(LABELS == 1, 1.0, -1.0)
    return np.where(right, sign, -sign).astype(np.float32)


def write_inputs(root, runs=RUNS, seeds=(42, 7)):
    for n, (name, per_seed) in enumerate(runs.items()):
        f1, auc, params, seconds, tps, rps = OTHER[name]
        for seed, (acc, val) in per_seed.items():
            where = name if seed is None else f"{name}/seed{seed}"
            evaluation = {
                "arch": name,
                "seed": seed,
                "accuracy": acc,
                "val_accuracy": val,
                "accuracy_unseen": acc - 0.001,
                "f1": f1,
                "roc_auc": auc,
                "parameters": params,
                "reviews_per_second": rps,
                "train_seconds": seconds,
            }
            for folder, content in (
                ("eval", evaluation),
                ("timing", {"train_seconds": seconds, "tokens_per_second": tps}),
            ):
                (root / folder / where).parent.mkdir(parents=True, exist_ok=True)
                (root / folder / f"{where}.json").write_text(json.dumps(content))
            (root / "predictions" / where).parent.mkdir(parents=True, exist_ok=True)
            save_npz(
                root / "predictions" / f"{where}.npz",
                logits=logits_with_accuracy(acc, 100 * n + (seed or 0)),
                labels=LABELS,
                review_ids=np.arange(len(LABELS)),
            )
            for folder, (x, y) in (("roc", ("fpr", "tpr")), ("precision_recall", ("recall", "precision"))):
                (root / folder / f"{where}.csv").parent.mkdir(parents=True, exist_ok=True)
                (root / folder / f"{where}.csv").write_text(f"{x},{y},threshold\n0.0,0.0,1.0\n0.5,{acc},0.0\n")
            if seed is not None:
                for metric, values in (
                    ("val/accuracy", (val - 0.05, val)),
                    ("val/loss", (0.6, 0.5)),
                    ("train/loss", (0.7, 0.4)),
                ):
                    tsv = root / "live" / name / f"seed{seed}" / "plots" / "metrics" / f"{metric}.tsv"
                    tsv.parent.mkdir(parents=True, exist_ok=True)
                    tsv.write_text(f"step\t{metric.split('/')[1]}\n0\t{values[0]}\n1\t{values[1]}\n")
                checkpoint = root / "data" / "models" / name / f"seed{seed}.pt"  # compare only copies the best one
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                checkpoint.write_text(f"{name} seed {seed}")
    repo = repo_params()
    params = {
        "seeds": list(seeds),
        "architectures": ["rnn", "gru", "lstm"],
        "pretrained_architectures": {"word2vec": ["gru_w2v"], "lm": []},
        "arch_defaults": repo["arch_defaults"],
        "train": repo["train"],
        **{name: repo[name] for name in ("rnn", "gru", "lstm", "gru_w2v", "bilstm", "bilstm_w2v")},
        "chapter": {"RNNs": ["rnn"], "LSTMs": ["lstm", "bilstm", "bilstm_w2v"], "GRUs": ["gru", "gru_w2v"]},
        "compare": STATS,
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_in_process(root, monkeypatch):
    monkeypatch.chdir(root)  # the checkpoints' paths are relative, as dvc.yaml's
    monkeypatch.setattr(
        sys,
        "argv",
        [
            str(STAGE),
            "--params",
            str(root / "params.yaml"),
            "--eval-dir",
            str(root / "eval"),
            "--timing-dir",
            str(root / "timing"),
            "--live-dir",
            str(root / "live"),
            "--roc-dir",
            str(root / "roc"),
            "--pr-dir",
            str(root / "precision_recall"),
            "--models-dir",
            "data/models",
            "--predictions-dir",
            str(root / "predictions"),
            "--markdown",
            str(root / "leaderboard.md"),
            "--json",
            str(root / "leaderboard.json"),
            "--figure",
            str(root / "compare.png"),
            "--curves-dir",
            str(root / "curves"),
            "--best",
            str(root / "best.pt"),
            "--chapter",
            str(root / "chapter.md"),
        ],
    )
    try:
        runpy.run_path(str(STAGE), run_name="__main__")
    except SystemExit as exit:
        return exit.code
    return 0


def test_mcnemar_exact_matches_the_binomial_computed_by_hand():
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1], bool)
    b = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    # discordant: a alone right on 2 reviews, b alone on 3: p = 2 * P(X <= 2), X ~ Binomial(5, 1/2) = 2 * 16/32
    assert mcnemar_exact(a, b) == pytest.approx(1.0)
    b2 = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1, 1], bool)  # a alone right on 4, b alone on 0: 2 * (1/2)^4
    assert mcnemar_exact(a, b2) == pytest.approx(2 * 0.5**4)
    assert mcnemar_exact(a, a) == 1.0  # two models that agree on every review
    with pytest.raises(ValueError, match="different review sets"):
        mcnemar_exact(a, a[:5])


def test_intervals_cover_the_accuracy_and_vanish_for_identical_models():
    correct = np.zeros(10_000, bool)
    correct[:9000] = True
    low, high = accuracy_interval(correct, 1000, 0.95, seed=0)
    half_width = 1.96 * np.sqrt(0.9 * 0.1 / 10_000)  # the normal approximation, 0.0059
    assert low < 0.9 < high and (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert accuracy_interval(correct, 1000, 0.95, seed=0) == (low, high)  # seeded
    assert paired_difference(correct, correct, 1000, 0.95, seed=0) == (0.0, 0.0, 0.0)
    assert accuracy_interval(np.ones(50, bool), 1000, 0.95, seed=0) == (1.0, 1.0)
    # a paired difference is narrower than the two separate intervals suggest when the models agree on most reviews
    other = correct.copy()
    other[9000:9100] = True  # right on 100 more reviews, the same 9,000 otherwise
    difference, d_low, d_high = paired_difference(other, correct, 1000, 0.95, seed=0)
    assert difference == pytest.approx(0.01) and 0 < d_low < 0.01 < d_high and d_high - d_low < high - low


def test_each_row_is_the_best_seed_by_validation_with_spread_interval_and_paired_test(tmp_path, monkeypatch):
    write_inputs(tmp_path)
    assert run_in_process(tmp_path, monkeypatch) == 0
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert board["sorted_by"] == "accuracy" and board["seeds"] == [42, 7]
    rows = {r["arch"]: r for r in board["rows"]}
    assert [r["arch"] for r in board["rows"]] == ["baseline", "gru_w2v", "lstm", "gru", "rnn"]
    gru = rows["gru"]
    # seed 7 wins on validation, so its test accuracy (0.86, not seed 42's 0.88) is the row's
    assert (gru["seed"], gru["accuracy"], gru["val_accuracy"]) == (7, 0.86, 0.87)
    assert gru["checkpoint"] == "data/models/gru/seed7.pt"  # imdb-predict's and the report's model
    # not "the last seed" nor "the worse test accuracy": gru_w2v's seed 42 wins on validation (and on test)
    assert rows["gru_w2v"]["seed"] == 42
    # lstm's seeds tie on validation: the first listed, though seed 7 is better on test
    assert (rows["lstm"]["seed"], rows["lstm"]["accuracy"]) == (42, 0.870)
    assert gru["accuracy_per_seed"] == {"42": 0.88, "7": 0.86}
    assert gru["accuracy_mean"] == pytest.approx(0.87) and gru["accuracy_sd"] == pytest.approx(
        np.std([0.88, 0.86], ddof=1), abs=1e-6
    )
    assert gru["val_minus_test"] == pytest.approx(0.01)
    low, high = gru["accuracy_ci"]
    assert low < 0.86 < high and high - low < 0.04
    top = rows["baseline"]
    assert top["rank"] == 1 and top["p_value_vs_top"] is None and top["seed"] is None and top["checkpoint"] is None
    # 2,000 reviews: 0.885 against 0.900 is inside the noise, 0.86 against 0.90 is not
    assert rows["gru_w2v"]["same_as_top"] is True and rows["gru_w2v"]["p_value_vs_top"] >= 0.05
    assert gru["same_as_top"] is False and gru["p_value_vs_top"] < 0.001
    d_low, d_high = gru["difference_to_top_ci"]
    assert gru["difference_to_top"] == pytest.approx(-0.04) and d_low < -0.04 < d_high < 0
    markdown = (tmp_path / "leaderboard.md").read_text()
    # how many test reviews every figure stands on: the official 25,000, or 80 in a tiny run
    assert markdown.startswith(f"# Leaderboard: {N:,} test reviews, sorted by accuracy\n")
    assert f"on the same {N:,} test reviews for every row" in markdown and all(
        r["test_reviews"] == N for r in board["rows"]
    )
    line = next(row for row in markdown.splitlines() if row.startswith("| 4 |"))
    assert line.startswith(
        f"| 4 | gru | random | 7 | 0.8600 [{low:.4f}, {high:.4f}] | 0.8700 ± 0.0141 (2 seeds) | -4.00 ["
    )
    assert "| +0.0100 |" in line  # validation − test
    assert next(row for row in markdown.splitlines() if row.startswith("| 2 |")).count(" ≈ |") == 1
    png = (tmp_path / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    # the registry's model: the best validation accuracy among the recurrent rows (the baseline's 0.91 is not one)
    assert (tmp_path / "best.pt").read_text() == "gru_w2v seed 42"
    # one long-format file per plot: every model's chosen seed, in rank order; the baseline has curves but no epochs
    ranked = [r["arch"] for r in board["rows"]]
    roc = (tmp_path / "curves" / "roc.csv").read_text().splitlines()
    assert roc[0] == "model,fpr,tpr" and [line.split(",")[0] for line in roc[1::2]] == ranked
    assert "gru,0.5,0.86" in roc  # seed 7's curve, the row's seed
    val = (tmp_path / "curves" / "val_accuracy.csv").read_text().splitlines()
    assert val[:3] == ["model,epoch,accuracy", f"gru_w2v,1,{0.90 - 0.05}", "gru_w2v,2,0.9"]
    assert [line.split(",")[0] for line in val[1::2]] == ranked[1:]
    # the chapter's table: its headings in order, accuracy over seeds, speed against lstm's from the same run
    chapter = (tmp_path / "chapter.md").read_text().splitlines()
    assert [line.split(" | ")[:2] for line in chapter[2:]] == [
        ["| RNNs", "`rnn`"],
        ["| LSTMs", "`lstm`"],
        ["| LSTMs", "`bilstm`"],
        ["| LSTMs", "`bilstm_w2v`"],
        ["| GRUs", "`gru`"],
        ["| GRUs", "`gru_w2v`"],
    ]
    assert chapter[6] == (
        "| GRUs | `gru` | Cho et al. 2014, Learning phrase representations using RNN encoder-decoder | "
        f"0.8700 ± {np.std([0.88, 0.86], ddof=1):.4f} (2 seeds) | {50_000 / 40_000:.2f}x |"
    )
    assert "bidirectional: Schuster & Paliwal 1997 | not trained in this run |" in chapter[4]
    # a twin not trained in this run takes its paper from the section it extends
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["bilstm_w2v"] == {"extends": "bilstm"}
    assert chapter[5].startswith("| LSTMs | `bilstm_w2v` | Hochreiter & Schmidhuber 1997")
    assert chapter[5].endswith("bidirectional: Schuster & Paliwal 1997 | not trained in this run |  |")
    for name, header in (
        ("val_loss", "model,epoch,loss"),
        ("train_loss", "model,epoch,loss"),
        ("precision_recall", "model,recall,precision"),
    ):
        assert (tmp_path / "curves" / f"{name}.csv").read_text().splitlines()[0] == header


def test_one_seed_gives_no_spread(tmp_path, monkeypatch):
    runs = {name: {s: v for s, v in per_seed.items() if s in (42, None)} for name, per_seed in RUNS.items()}
    write_inputs(tmp_path, runs, seeds=(42,))
    assert run_in_process(tmp_path, monkeypatch) == 0
    gru = next(r for r in json.loads((tmp_path / "leaderboard.json").read_text())["rows"] if r["arch"] == "gru")
    assert (gru["seed"], gru["accuracy_sd"]) == (42, None)
    assert "| 0.8800 (1 seed) |" in (tmp_path / "leaderboard.md").read_text()


def test_format_duration():
    assert format_duration(9.96) == "10.0s"
    assert format_duration(60) == "1m 00s"
    assert format_duration(3599.4) == "59m 59s"
    assert format_duration(7260) == "2h 01m"


@pytest.mark.parametrize(
    "missing, stage",
    [
        ("eval/gru/seed7.json", "evaluate@gru-7"),
        ("timing/lstm/seed42.json", "train@lstm-42"),
        ("live/rnn/seed42/plots/metrics/val/accuracy.tsv", "train@rnn-42"),
        ("predictions/gru_w2v/seed7.npz", "evaluate_word2vec@gru_w2v-7"),
        ("eval/baseline.json", "baseline"),
    ],
)
def test_missing_input_names_the_stage_to_run(tmp_path, monkeypatch, capsys, missing, stage):
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)  # stage names come from ./params.yaml
    (tmp_path / missing).unlink()
    assert run_in_process(tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dvc repro {stage}" in err
    assert not (tmp_path / "leaderboard.md").exists() and not (tmp_path / "compare.png").exists()


@pytest.mark.parametrize("change", ["labels", "order", "no ids"])
def test_predictions_of_other_test_reviews_are_refused(tmp_path, monkeypatch, capsys, change):
    write_inputs(tmp_path)
    for seed in (42, 7):  # the same accuracy and labels, on other reviews or in another order
        path = tmp_path / f"predictions/lstm/seed{seed}.npz"
        with np.load(path) as saved:
            arrays = dict(saved)
        if change == "labels":
            arrays.update(logits=-arrays["logits"], labels=1 - arrays["labels"])
        elif change == "order":  # two reviews of the same label swapped: the labels alone cannot tell
            first, second = np.flatnonzero(arrays["labels"] == 1)[:2]
            arrays["review_ids"][[first, second]] = arrays["review_ids"][[second, first]]
        else:  # a file from before review ids were saved
            del arrays["review_ids"]
        save_npz(path, **arrays)
    assert run_in_process(tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not scored on the same test reviews in the same order" in err


@pytest.mark.parametrize("seeds, fragment", [([], "non-empty list"), ([42, 42], "names a seed twice")])
def test_a_bad_seed_list_is_one_line(tmp_path, monkeypatch, capsys, seeds, fragment):
    write_inputs(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "seeds": seeds}))
    assert run_in_process(tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_load_run_reports_missing_evaluation(tmp_path):
    paths = {"eval_dir": tmp_path / "eval", "timing_dir": tmp_path / "timing", "predictions_dir": tmp_path / "p"}
    with pytest.raises(PipelineError, match="evaluate@gru-42"):
        load_run("gru", 42, paths)


def test_alpha_decides_the_mark(tmp_path, monkeypatch):
    write_inputs(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["compare"]["alpha"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_in_process(tmp_path, monkeypatch) == 0
    rows = {r["arch"]: r for r in json.loads((tmp_path / "leaderboard.json").read_text())["rows"]}
    for row in rows.values():
        if row["p_value_vs_top"] is not None:
            assert row["same_as_top"] is (row["p_value_vs_top_adjusted"] >= 0.5), row
    assert rows["gru_w2v"]["p_value_vs_top_adjusted"] < 0.5 and rows["gru_w2v"]["same_as_top"] is False
    assert "(p ≥ 0.5)." in (tmp_path / "leaderboard.md").read_text()


@pytest.mark.parametrize(
    "where, change, message",
    [
        ("eval/gru/seed7.json", {"seed": 42}, "seed 42, not 7"),
        ("eval/gru/seed7.json", {"arch": "lstm"}, "arch lstm, not gru"),
        ("eval/gru/seed7.json", {"accuracy": 0.87}, "different runs"),
        ("eval/gru/seed7.json", {"val_accuracy": None}, "no validation accuracy"),
    ],
)
def test_metrics_of_another_run_are_refused(tmp_path, monkeypatch, capsys, where, change, message):
    write_inputs(tmp_path)
    path = tmp_path / where
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    assert run_in_process(tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "dvc repro -f" in err, err
    assert not (tmp_path / "leaderboard.md").exists()


def test_holm_adjusts_the_rows_p_values_together():
    # Holm: sorted 0.01 x 3, 0.03 x 2, 0.04 x 1, each at least the one before: 0.03, 0.06, 0.06
    assert adjust_p_values([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_p_values([0.01, 0.04, 0.03], "none") == [0.01, 0.04, 0.03]
    assert adjust_p_values([], "holm") == []
    with pytest.raises(ValueError, match="holm or none"):
        adjust_p_values([0.5], "bonferonni")


def test_the_mark_reads_the_adjusted_p_value(tmp_path, monkeypatch):
    write_inputs(tmp_path)
    assert run_in_process(tmp_path, monkeypatch) == 0
    rows = [r for r in json.loads((tmp_path / "leaderboard.json").read_text())["rows"] if r["rank"] > 1]
    raw = [r["p_value_vs_top"] for r in rows]
    assert [r["p_value_vs_top_adjusted"] for r in rows] == pytest.approx(adjust_p_values(raw, "holm"), rel=1e-3)
    assert all(r["same_as_top"] is (r["p_value_vs_top_adjusted"] >= 0.05) for r in rows)
    assert "McNemar p (Holm)" in (tmp_path / "leaderboard.md").read_text()


def test_the_registered_model_is_the_best_by_validation_never_by_test():
    board = [
        {"arch": "baseline", "rank": 1, "val_accuracy": 0.95},
        {"arch": "gru", "rank": 2, "val_accuracy": 0.80},
        {"arch": "lstm", "rank": 3, "val_accuracy": 0.90},
        {"arch": "bilstm", "rank": 4, "val_accuracy": 0.90},
    ]
    assert best_model(board)["arch"] == "lstm"  # ties go to the better rank; the n-gram baseline is no checkpoint


@pytest.mark.parametrize(
    "chapter, message",
    [
        (
            {"GRUs": ["gruu"]},
            "chapter names 'gruu', which no params.yaml section defines: pick among rnn, gru, lstm, gru_w2v",
        ),
        ({"GRUs": "gru"}, "parameter chapter must map each heading to a list of architectures, got {'GRUs': 'gru'}"),
    ],
)
def test_a_bad_chapter_is_one_line(tmp_path, chapter, message):
    write_inputs(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "chapter": chapter}, sort_keys=False))
    with pytest.raises(PipelineError) as refused:
        read_chapter(tmp_path / "params.yaml", ["rnn", "gru", "lstm", "gru_w2v"])
    assert str(refused.value) == message
