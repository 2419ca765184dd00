"""tools/paired.py: two models on the same test reviews."""

import re

import numpy as np
from conftest import REPO_ROOT, run_script

from imdb_rnn.pipeline import save_npz

N = 1000


def predictions(root, where, labels, right):
    sign = np.where(labels == 1, 1.0, -1.0)
    path = root / "predictions" / where
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npz(
        path, logits=np.where(right, sign, -sign).astype(np.float32), labels=labels, review_ids=np.arange(len(labels))
    )


def test_difference_interval_and_mcnemar(tmp_path):
    labels = np.random.default_rng(0).integers(0, 2, N).astype(np.int8)
    a = np.zeros(N, bool)
    a[:800] = True
    b = a.copy()
    b[800:900] = True  # right on the same 800 and on 100 more
    predictions(tmp_path, "gru/seed7.npz", labels, a)
    predictions(tmp_path, "gru_w2v/seed7.npz", labels, b)
    result = run_script(
        REPO_ROOT / "tools/paired.py",
        "gru",
        "gru_w2v",
        "--seed",
        "7",
        "--predictions-dir",
        tmp_path / "predictions",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "gru: 0.8000  gru_w2v: 0.9000  (seed 7, 1,000 test reviews)" in result.stdout
    line = re.search(
        r"gru_w2v - gru: \+10\.00 points \[\+([\d.]+), \+([\d.]+)\].*McNemar p = ([\de.-]+)", result.stdout
    )
    assert line, result.stdout
    low, high, p = map(float, line.groups())
    assert 7 < low < 10 < high < 13 and p < 1e-20  # 100 discordant reviews, all one way: p = 2 / 2^100


def test_missing_or_mismatched_predictions_are_one_line(tmp_path):
    labels = np.zeros(N, np.int8)
    predictions(tmp_path, "gru/seed42.npz", labels, np.ones(N, bool))
    args = ("--predictions-dir", tmp_path / "predictions", "--seed", "42")
    result = run_script(REPO_ROOT / "tools/paired.py", "gru", "lstm", *args, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "lstm/seed42.npz is missing" in result.stderr
    predictions(tmp_path, "lstm/seed42.npz", 1 - labels, np.ones(N, bool))
    result = run_script(REPO_ROOT / "tools/paired.py", "gru", "lstm", *args, cwd=tmp_path)
    assert result.returncode == 1 and "not scored on the same test reviews" in result.stderr
    predictions(tmp_path, "lstm/seed42.npz", labels, np.ones(N, bool))  # the same labels, the reviews in another order
    with np.load(tmp_path / "predictions/lstm/seed42.npz") as saved:
        arrays = dict(saved)
    arrays["review_ids"] = arrays["review_ids"][::-1].copy()
    save_npz(tmp_path / "predictions/lstm/seed42.npz", **arrays)
    result = run_script(REPO_ROOT / "tools/paired.py", "gru", "lstm", *args, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "same order" in result.stderr
