"""Compare: the leaderboard's order and format, the picture, and a missing evaluation."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import yaml

from imdb_rnn.artifacts import PipelineError
from imdb_rnn.compare import format_duration, leaderboard, load_row, to_markdown

STAGE = Path(__file__).resolve().parents[1] / "stages" / "compare.py"

RESULTS = {  # arch: (accuracy, f1, roc_auc, parameters, train_seconds, tokens/s, reviews/s, val curve)
    "rnn": (0.70, 0.69, 0.77, 2_503_401, 45.25, 120_000.4, 9_000.6, [0.60, 0.65, 0.70]),
    "gru": (0.88, 0.87, 0.95, 3_300_000, 725.0, 50_000.0, 3_000.0, [0.80, 0.86]),
    "lstm": (0.86, 0.86, None, 3_400_000, 4_000.0, 40_000.0, 2_500.0, [0.79, 0.84, 0.85]),
    "gru_w2v": (0.89, 0.88, 0.96, 3_300_000, 700.0, 51_000.0, 3_000.0, [0.85, 0.89]),
    "baseline": (0.90, 0.90, 0.97, 346_134, 11.0, None, 3_100.0, None),  # the n-gram model: no curves
}
PRETRAINED = {"rnn": "none", "gru": "none", "lstm": "none", "gru_w2v": "word2vec", "baseline": "n-grams"}


def write_inputs(root, names=RESULTS):
    for name in names:
        acc, f1, auc, params, seconds, tps, rps, curve = RESULTS[name]
        evaluation = {"arch": name, "accuracy": acc, "f1": f1, "roc_auc": auc, "parameters": params,
                      "reviews_per_second": rps, "train_seconds": seconds}
        (root / "eval").mkdir(parents=True, exist_ok=True)
        (root / "eval" / f"{name}.json").write_text(json.dumps(evaluation))
        (root / "timing").mkdir(parents=True, exist_ok=True)
        (root / "timing" / f"{name}.json").write_text(json.dumps({"train_seconds": seconds, "tokens_per_second": tps}))
        if curve:
            tsv = root / "live" / name / "plots" / "metrics" / "val" / "accuracy.tsv"
            tsv.parent.mkdir(parents=True, exist_ok=True)
            tsv.write_text("step\taccuracy\n" + "".join(f"{i}\t{v}\n" for i, v in enumerate(curve)))
    params = {"architectures": ["rnn", "gru", "lstm"], "pretrained_architectures": {"gru_w2v": "word2vec"},
              "rnn": {}, "gru": {}, "lstm": {}, "gru_w2v": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def run_in_process(root, monkeypatch):
    monkeypatch.setattr(sys, "argv", [
        str(STAGE), "--params", str(root / "params.yaml"), "--eval-dir", str(root / "eval"),
        "--timing-dir", str(root / "timing"), "--live-dir", str(root / "live"), "--models-dir", "data/models",
        "--markdown", str(root / "leaderboard.md"), "--json", str(root / "leaderboard.json"),
        "--figure", str(root / "compare.png"),
    ])
    try:
        runpy.run_path(str(STAGE), run_name="__main__")
    except SystemExit as exit:
        return exit.code
    return 0


def test_leaderboard_sorts_by_accuracy_then_f1():
    rows = [
        {"arch": "a", "accuracy": 0.80, "f1": 0.70},
        {"arch": "b", "accuracy": 0.90, "f1": 0.90},
        {"arch": "c", "accuracy": 0.80, "f1": 0.75},
    ]
    board = leaderboard(rows)
    assert [r["arch"] for r in board] == ["b", "c", "a"]
    assert [r["rank"] for r in board] == [1, 2, 3]


def test_markdown_table_is_formatted(tmp_path):
    write_inputs(tmp_path)
    board = leaderboard([load_row(n, tmp_path / "eval", tmp_path / "timing", PRETRAINED[n]) for n in RESULTS])
    lines = to_markdown(board).splitlines()
    assert lines[2] == ("| rank | architecture | initial weights | test accuracy | F1 | ROC AUC | parameters | "
                        "training time | training tokens/s | inference reviews/s |")
    assert lines[3] == "|---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|"
    assert lines[4] == "| 1 | baseline | n-grams | 0.9000 | 0.9000 | 0.9700 | 346,134 | 11.0s | n/a | 3,100 |"
    assert lines[5] == "| 2 | gru_w2v | word2vec | 0.8900 | 0.8800 | 0.9600 | 3,300,000 | 11m 40s | 51,000 | 3,000 |"
    assert lines[6] == "| 3 | gru | none | 0.8800 | 0.8700 | 0.9500 | 3,300,000 | 12m 05s | 50,000 | 3,000 |"
    assert lines[7] == "| 4 | lstm | none | 0.8600 | 0.8600 | n/a | 3,400,000 | 1h 06m | 40,000 | 2,500 |"
    assert lines[8] == "| 5 | rnn | none | 0.7000 | 0.6900 | 0.7700 | 2,503,401 | 45.2s | 120,000 | 9,001 |"
    assert len(lines) == 9


def test_format_duration():
    assert format_duration(9.96) == "10.0s"
    assert format_duration(60) == "1m 00s"
    assert format_duration(3599.4) == "59m 59s"
    assert format_duration(7260) == "2h 01m"


def test_stage_writes_leaderboard_and_picture(tmp_path, monkeypatch):
    write_inputs(tmp_path)
    assert run_in_process(tmp_path, monkeypatch) == 0
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert board["sorted_by"] == "accuracy"
    assert [r["arch"] for r in board["rows"]] == ["baseline", "gru_w2v", "gru", "lstm", "rnn"]
    assert board["rows"][2] == {
        "rank": 3, "arch": "gru", "pretrained": "none", "accuracy": 0.88, "f1": 0.87, "roc_auc": 0.95, "parameters": 3_300_000,
        "train_seconds": 725.0, "train_tokens_per_second": 50_000.0, "inference_reviews_per_second": 3_000.0,
        "checkpoint": "data/models/gru.pt",  # imdb-predict's default model is the best row's checkpoint
    }
    assert board["rows"][0]["checkpoint"] is None  # the n-gram baseline has none
    assert (tmp_path / "leaderboard.md").read_text().startswith("# Leaderboard")
    png = (tmp_path / "compare.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


@pytest.mark.parametrize("missing, stage", [("eval/gru.json", "evaluate@gru"), ("timing/lstm.json", "train@lstm"),
                                            ("live/rnn/plots/metrics/val/accuracy.tsv", "train@rnn"),
                                            ("eval/baseline.json", "baseline")])
def test_missing_input_names_the_stage_to_run(tmp_path, monkeypatch, capsys, missing, stage):
    write_inputs(tmp_path)
    (tmp_path / missing).unlink()
    assert run_in_process(tmp_path, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dvc repro {stage}" in err
    assert not (tmp_path / "leaderboard.md").exists() and not (tmp_path / "compare.png").exists()


def test_load_row_reports_missing_evaluation(tmp_path):
    with pytest.raises(PipelineError, match="evaluate@gru"):
        load_row("gru", tmp_path / "eval", tmp_path / "timing")
