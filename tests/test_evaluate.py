"""Evaluate: metric values against hand computation, and the stage's refusals of bad input."""

import csv
import hashlib
import json
import math
import runpy
import shlex
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import REPO_ROOT, assert_one_line_error, run_script

from imdb_rnn.checkpoint import load_checkpoint, save_checkpoint
from imdb_rnn.config import ModelConfig
from imdb_rnn.evaluate import classification_metrics, precision_recall_points, roc_points, thin, to_csv
from imdb_rnn.model import RecurrentClassifier
from imdb_rnn.pipeline import SUPERVISED, save_npz
from imdb_rnn.predict import Predictor

STAGE = Path(__file__).resolve().parents[1] / "stages" / "evaluate.py"
VOCAB = ["<pad>", "<unk>", "good", "bad", "plot", "movie"]
CLEAN = {"lowercase": True, "strip_html_breaks": True, "punctuation": "remove"}
TOKENIZE = {"seq_len": 8, "pad_side": "left", "truncate_side": "right"}
VOCAB_SHA = hashlib.sha256(("\n".join(VOCAB) + "\n").encode()).hexdigest()


def softplus(x):
    return math.log1p(math.exp(x))


# --- metrics -----------------------------------------------------------------------------


def test_metrics_match_hand_computation():
    labels = [1, 1, 1, 0, 0, 0]
    logits = [2.0, 1.0, -1.0, 0.5, 0.3, -2.0]
    # called positive: 2, 1 (right), 0.5, 0.3 (wrong); called negative: -1 (wrong), -2 (right)
    m = classification_metrics(labels, logits)
    assert m["confusion"] == {"tp": 2, "fp": 2, "tn": 1, "fn": 1}
    assert m["reviews"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6, abs=1e-6)
    assert m["precision"] == pytest.approx(2 / 4, abs=1e-6)
    assert m["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1), abs=1e-6)
    # positive scores beat negative ones in 3 + 3 + 1 of 9 pairs
    assert m["roc_auc"] == pytest.approx(7 / 9, abs=1e-6)
    expected_loss = (softplus(-2) + softplus(-1) + softplus(1) + softplus(0.5) + softplus(0.3) + softplus(-2)) / 6
    assert m["log_loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert m["single_class"] is False


def test_log_loss_stays_finite_for_confident_mistakes():
    # probability 1.0 in floating point; the loss is still the exact logit margin
    m = classification_metrics([0, 1], [60.0, 60.0])
    assert m["log_loss"] == pytest.approx(30.0, abs=1e-6)


def test_all_positive_labels_leave_roc_auc_undefined():
    m = classification_metrics([1, 1, 1], [2.0, -1.0, 0.5])
    assert m["single_class"] is True
    assert m["roc_auc"] is None
    assert m["confusion"] == {"tp": 2, "fp": 0, "tn": 0, "fn": 1}
    assert m["accuracy"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert roc_points([1, 1, 1], [2.0, -1.0, 0.5], 10) == []
    assert precision_recall_points([1, 1, 1], [2.0, -1.0, 0.5], 10) == []
    json.dumps(m, allow_nan=False)  # valid JSON: null, never NaN


def test_all_negative_labels_make_rates_that_divide_by_zero_null():
    m = classification_metrics([0, 0], [-2.0, -1.0])
    assert m["accuracy"] == 1.0
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None and m["roc_auc"] is None
    assert m["confusion"] == {"tp": 0, "fp": 0, "tn": 2, "fn": 0}
    json.dumps(m, allow_nan=False)


def test_curves_are_thinned_and_keep_their_ends():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    logits = labels + rng.normal(0, 1, 2000)
    roc = roc_points(labels, logits, 50)
    assert 2 <= len(roc) <= 50
    assert (roc[0]["fpr"], roc[0]["tpr"]) == (0.0, 0.0) and (roc[-1]["fpr"], roc[-1]["tpr"]) == (1.0, 1.0)
    # thresholds are probabilities of the reviews' own logits (the first, +inf, is probability 1)
    probabilities = set((1 / (1 + np.exp(-logits))).tolist())
    assert roc[0]["threshold"] == 1.0 and all(r["threshold"] in probabilities for r in roc[1:])
    pr = precision_recall_points(labels, logits, 50)
    assert len(pr) <= 50
    recalls = [r["recall"] for r in pr]
    assert recalls == sorted(recalls) and recalls[0] == 0.0 and recalls[-1] == 1.0
    assert list(thin(5, 10)) == [0, 1, 2, 3, 4]


# --- the stage ---------------------------------------------------------------------------


def make_workspace(tmp_path, n=10, labels=None, in_train=None, **checkpoint_changes):
    """test.npz, meta.json, params.yaml and a tiny GRU checkpoint, consistent unless changed."""
    rng = np.random.default_rng(1)
    seq_len = TOKENIZE["seq_len"]
    lengths = rng.integers(1, seq_len + 1, n).astype(np.int32)
    ids = np.zeros((n, seq_len), np.int32)
    for row, length in enumerate(lengths):
        ids[row, seq_len - length :] = rng.integers(2, len(VOCAB), length)  # left padding
    labels = np.array([i % 2 for i in range(n)] if labels is None else labels, np.int8)
    in_train = np.zeros(n, bool) if in_train is None else np.asarray(in_train, bool)
    review_ids = rng.permutation(10 * n)[:n]  # aclImdb's ids, in no particular order
    save_npz(tmp_path / "test.npz", ids=ids, lengths=lengths, labels=labels, review_ids=review_ids, in_train=in_train)
    meta = {"clean": CLEAN, "tokenize": TOKENIZE, "vocab_size": len(VOCAB), "vocab_sha256": VOCAB_SHA}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    params = {"evaluate": {"batch_size": 4, "device": "cpu", "threads": 1, "curve_points": 50}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    config = ModelConfig(
        vocab_size=len(VOCAB),
        cell="gru",
        bidirectional=False,
        num_layers=1,
        pooling="max",
        embed_dim=4,
        hidden_dim=3,
        dropout=0.0,
        embed_dropout=0.0,
    )
    torch.manual_seed(0)  # the same weights whichever tests ran before: near-equal logits must not swap ranks
    model = config.build()
    checkpoint = dict(
        arch_name="gru",
        config=config,
        state_dict=model.state_dict(),
        vocab=VOCAB,
        clean=CLEAN,
        tokenize=dict(TOKENIZE),
        vocab_sha256=VOCAB_SHA,
        metrics={"train_seconds": 12.5, "tokens_per_second": 1000.0, "seed": 7, "val_accuracy": 0.75},
    )
    checkpoint.update(checkpoint_changes)
    save_checkpoint(tmp_path / "gru.pt", **checkpoint)
    return tmp_path


def stage_args(ws):
    return [
        "--arch",
        "gru",
        "--params",
        str(ws / "params.yaml"),
        "--checkpoint",
        str(ws / "gru.pt"),
        "--test",
        str(ws / "test.npz"),
        "--meta",
        str(ws / "meta.json"),
        "--metrics",
        str(ws / "eval.json"),
        "--predictions",
        str(ws / "predictions.npz"),
        "--roc",
        str(ws / "roc.csv"),
        "--pr",
        str(ws / "pr.csv"),
        "--confusion",
        str(ws / "confusion.csv"),
    ]


def run_in_process(ws, monkeypatch):
    """Run stages/evaluate.py in this process (fast); return its exit code."""
    monkeypatch.setattr(sys, "argv", [str(STAGE), *stage_args(ws)])
    monkeypatch.setenv(SUPERVISED, "1")  # in this process, not in a supervised child
    try:
        runpy.run_path(str(STAGE), run_name="__main__")
    except SystemExit as exit:
        return exit.code
    return 0


def test_stage_writes_metrics_curves_and_confusion(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path)
    clock = iter([100.0, 102.5])  # the stage's two readings around the scoring: 2.5 s for 10 reviews
    monkeypatch.setattr("imdb_rnn.evaluate.time", SimpleNamespace(perf_counter=lambda: next(clock)))
    assert run_in_process(ws, monkeypatch) == 0
    metrics = json.loads((ws / "eval.json").read_text())
    assert metrics["arch"] == "gru" and metrics["reviews"] == 10
    logits, labels = independent_logits(ws / "gru.pt", ws / "test.npz")
    expected = classification_metrics(labels, logits)
    assert metrics["accuracy"] == expected["accuracy"] and metrics["confusion"] == expected["confusion"]
    for key in ("precision", "recall", "f1", "roc_auc", "log_loss"):
        assert metrics[key] == pytest.approx(expected[key], abs=2e-6), key
    assert metrics["parameters"] == sum(
        p.numel() for p in RecurrentClassifier(len(VOCAB), 4, 3, "gru", pooling="max").parameters()
    )
    assert metrics["train_seconds"] == 12.5
    assert (metrics["inference_seconds"], metrics["reviews_per_second"]) == (2.5, 4.0)
    assert (metrics["seed"], metrics["val_accuracy"]) == (7, 0.75)  # the checkpoint's, for compare's choice of seed
    predictions = np.load(ws / "predictions.npz")
    np.testing.assert_allclose(predictions["logits"], logits, atol=1e-6)
    np.testing.assert_array_equal(predictions["labels"], labels)
    np.testing.assert_array_equal(predictions["review_ids"], np.load(ws / "test.npz")["review_ids"])  # test.npz's order

    with open(ws / "confusion.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and set(rows[0]) == {"actual", "predicted"}
    assert [r["actual"] for r in rows] == ["neg", "pos"] * 5
    assert [r["predicted"] for r in rows] == ["pos" if x > 0 else "neg" for x in logits]
    assert (ws / "roc.csv").read_text().startswith("fpr,tpr,threshold\n")
    assert (ws / "pr.csv").read_text().startswith("recall,precision,threshold\n")


def test_accuracy_unseen_leaves_out_the_test_reviews_whose_text_is_a_training_review(tmp_path, monkeypatch):
    in_train = [True, True, True, False, False, False, False, False, False, False]
    ws = make_workspace(tmp_path, in_train=in_train)
    assert run_in_process(ws, monkeypatch) == 0
    metrics = json.loads((ws / "eval.json").read_text())
    logits, labels = independent_logits(ws / "gru.pt", ws / "test.npz")
    right = (logits > 0) == (labels > 0.5)
    assert metrics["test_reviews_in_train"] == 3
    assert metrics["accuracy_unseen"] == pytest.approx(right[3:].mean(), abs=1e-6)
    assert metrics["accuracy"] == pytest.approx(right.mean(), abs=1e-6)  # the official test set is scored whole


def test_stage_survives_a_single_class_test_set(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path, n=4, labels=[1, 1, 1, 1])
    assert run_in_process(ws, monkeypatch) == 0
    metrics = json.loads((ws / "eval.json").read_text())
    assert metrics["roc_auc"] is None and metrics["single_class"] is True


BAD_CHECKPOINTS = {  # the change, and what the one-line error must say
    "other vocabulary": (dict(vocab_sha256="0" * 64), "different vocabulary"),
    "other padding side": (
        dict(tokenize=dict(TOKENIZE, pad_side="right")),
        "tokenize.pad_side='right' but the test data has 'left'",
    ),
    "other truncation side": (dict(tokenize=dict(TOKENIZE, truncate_side="left")), "tokenize.truncate_side='left'"),
    "longer reviews than the test data": (
        dict(tokenize=dict(TOKENIZE, seq_len=TOKENIZE["seq_len"] + 1)),
        "reads 9 tokens per review but the test data keeps only 8",
    ),
    "other cleaning": (dict(clean=dict(CLEAN, punctuation="keep")), "cleaned differently"),
    "other architecture": (dict(arch_name="lstm"), "holds architecture 'lstm', not 'gru'"),
    "no training time": (dict(metrics={}), "does not record its training time"),
}


@pytest.mark.parametrize("change, says", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_mismatched_checkpoint_is_refused(tmp_path, monkeypatch, capsys, change, says):
    ws = make_workspace(tmp_path, **change)
    assert run_in_process(ws, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
    assert not (ws / "eval.json").exists()


@pytest.mark.parametrize(
    "damage, says",
    [
        ("missing", "is missing"),
        ("truncated", "is corrupt or truncated"),
        ("not a checkpoint", "is corrupt or truncated"),
    ],
)
def test_bad_checkpoint_file_is_refused(tmp_path, monkeypatch, capsys, damage, says):
    ws = make_workspace(tmp_path)
    checkpoint = ws / "gru.pt"
    if damage == "missing":
        checkpoint.unlink()
    elif damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    else:
        checkpoint.write_text("hello")
    assert run_in_process(ws, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and f"checkpoint {checkpoint} {says}" in err, err
    assert not (ws / "eval.json").exists()


def test_empty_test_set_is_refused(tmp_path, monkeypatch, capsys):
    ws = make_workspace(tmp_path, n=0, labels=[])
    assert run_in_process(ws, monkeypatch) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "empty" in err
    assert not (ws / "eval.json").exists()


def test_stage_process_exits_non_zero_with_one_line(tmp_path):
    ws = make_workspace(tmp_path, vocab_sha256="0" * 64)
    assert_one_line_error(run_script("evaluate", *stage_args(ws), cwd=tmp_path), "different vocabulary")
    assert not (ws / "eval.json").exists()


def test_stage_scores_the_whole_test_set_and_counts_reviews_without_a_known_word(tmp_path, monkeypatch):
    ws = make_workspace(tmp_path)
    data = dict(np.load(ws / "test.npz"))
    seq_len = data["ids"].shape[1]
    data["ids"][[2, 5]] = 0
    data["ids"][[2, 5], seq_len - 1] = 1  # what tokenize makes of an empty review: one <unk>
    data["lengths"][[2, 5]] = 1
    save_npz(ws / "test.npz", **data)
    assert run_in_process(ws, monkeypatch) == 0
    metrics = json.loads((ws / "eval.json").read_text())
    assert metrics["reviews"] == 10 and metrics["reviews_without_known_words"] == 2


# --- the stage on a model that has learned something -------------------------------------------


@pytest.fixture(scope="module")
def learned(tiny_data, tmp_path_factory):
    """A workspace laid out as dvc.yaml expects, with a gru checkpoint that has learned the marker words.

    The tokens come from the tiny pipeline (tiny_data); the model is trained by stages/train.py.
    """
    root = tmp_path_factory.mktemp("learned")
    params = yaml.safe_load((tiny_data / "params.yaml").read_text())
    params["gru"].update(epochs=10, patience=10, lr=0.03, batch_size=8, embed_dim=16, hidden_dim=16)
    # small batches: the stage scores the test set in several batches, unlike a review scored alone
    params["evaluate"].update(device="cpu", threads=1, batch_size=16)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "data").mkdir()
    shutil.copytree(tiny_data / "data/tokens", root / "data/tokens")
    data = tiny_data / "data"
    result = run_script(
        "train",
        "--arch",
        "gru",
        "--train",
        data / "split/train.npz",
        "--val",
        data / "split/val.npz",
        "--meta",
        data / "tokens/meta.json",
        "--vocab",
        data / "vocab/vocab.txt",
        "--out",
        "data/models/gru/seed42.pt",
        "--metrics",
        "train.json",
        "--timing",
        "timing.json",
        "--live",
        "live",
        "--resume",
        "resume.pt",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    # the evaluate stage's command exactly as dvc.yaml runs it
    command = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["cmd"]
    argv = shlex.split(command.replace("${item.arch}", "gru").replace("${item.seed}", "42"))
    assert argv[:2] == ["python", "stages/evaluate.py"]
    result = run_script(REPO_ROOT / argv[1], *argv[2:], cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def independent_logits(checkpoint, test_npz):
    """The checkpoint's logit for each test review, read from test.npz without the project's batching:
    the real tokens are the non-zero ids (padding is 0, <unk> 1), scored one review at a time."""
    model, _ = load_checkpoint(checkpoint)
    test = np.load(test_npz)
    logits = []
    with torch.no_grad():
        for ids, length in zip(test["ids"], test["lengths"]):
            tokens = ids[ids != 0]
            assert len(tokens) == length
            logits.append(model(torch.from_numpy(tokens[None].astype(np.int64)), torch.tensor([length])).item())
    return np.array(logits, np.float32), test["labels"].astype(np.int64)


def test_stage_scores_a_learned_model_as_its_logits_say(learned):
    metrics = json.loads((learned / "metrics/eval/gru/seed42.json").read_text())
    logits, labels = independent_logits(learned / "data/models/gru/seed42.pt", learned / "data/tokens/test.npz")
    expected = classification_metrics(labels, logits)
    assert metrics["reviews"] == len(labels) == 120
    assert metrics["accuracy"] >= 0.9  # the marker words decide the label: a model that read them is right
    assert metrics["accuracy"] == expected["accuracy"] and metrics["confusion"] == expected["confusion"]
    for key in ("precision", "recall", "f1", "roc_auc", "log_loss"):
        assert metrics[key] == pytest.approx(expected[key], abs=2e-6), key
    with open(learned / "metrics/confusion/gru/seed42.csv") as f:
        predicted = [row["predicted"] for row in csv.DictReader(f)]
    assert predicted == ["pos" if x > 0 else "neg" for x in logits]


def test_predictor_probabilities_equal_the_evaluate_stages(learned, tiny_data):
    """README: float32 imdb-predict scores a raw review exactly as the evaluate stage scored its tokens."""
    table = pq.read_table(tiny_data / "data/ingest/reviews.parquet").to_pandas()
    table = table[table["split"] == "test"].set_index(["label", "id"])  # file numbers restart per label
    test = np.load(learned / "data/tokens/test.npz")
    labels = test["labels"].astype(np.int64)
    texts = table.loc[[("pos" if y else "neg", i) for y, i in zip(labels, test["review_ids"])], "text"].tolist()
    logits = Predictor.load(learned / "data/models/gru/seed42.pt").logits(texts)  # raw text, batches of 128
    # scored alone, a review moves by float rounding only (a batch of one takes another kernel path)
    np.testing.assert_allclose(
        logits,
        independent_logits(learned / "data/models/gru/seed42.pt", learned / "data/tokens/test.npz")[0],
        rtol=0,
        atol=1e-6,
    )
    # the stage (batches of 16) computed the very same numbers: its curves, recomputed from the
    # Predictor's logits, are the stage's files byte for byte (probabilities to 6 decimals)
    points = yaml.safe_load((learned / "params.yaml").read_text())["evaluate"]["curve_points"]
    assert (learned / "metrics/roc/gru/seed42.csv").read_text() == to_csv(
        roc_points(labels, logits, points), ["fpr", "tpr", "threshold"]
    )
    assert (learned / "metrics/precision_recall/gru/seed42.csv").read_text() == to_csv(
        precision_recall_points(labels, logits, points), ["recall", "precision", "threshold"]
    )
    assert (
        json.loads((learned / "metrics/eval/gru/seed42.json").read_text())["log_loss"]
        == classification_metrics(labels, logits)["log_loss"]
    )
