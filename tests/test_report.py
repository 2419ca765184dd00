"""The attention report: an HTML page and a PNG for a tiny attention model on synthetic reviews."""

import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import assert_one_line_error, run_script
from tiny_model import CLEAN, TOKENIZE, synthetic_reviews, train_tiny

from imdb_rnn.ingest import write_table
from imdb_rnn.report import MAX_ALPHA
from imdb_rnn.text import clean_texts, split_words

CHROMIUM = Path("/usr/bin/chromium")
LONG_REVIEW = " ".join(["superb"] + ["film"] * 80)  # longer than the tiny model's 48 tokens


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    model = tmp / "attention.pt"
    train_tiny(model, "attention", pooling="attention", cell="gru")
    texts, labels = synthetic_reviews(40, seed=7)
    texts = texts + [LONG_REVIEW, "<br />!!!", "the brilliant film was awful"]
    labels = np.concatenate([labels, [1, 0, 0]])
    cleaned = clean_texts(texts, CLEAN).to_pylist()
    n = len(texts)
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int32()),
            "split": ["test"] * n,
            "label": ["pos" if y else "neg" for y in labels],
            "rating": pa.array([8 if y else 2 for y in labels], pa.int8()),
            "text": cleaned,
        }
    ).replace_schema_metadata({"imdb_rnn.clean": json.dumps(CLEAN)})
    # a train review that must not be shown
    table = pa.concat_tables([table, table.slice(0, 1).set_column(1, "split", pa.array(["train"]))])
    write_table(table, tmp / "reviews.parquet")
    out = tmp / "metrics" / "attention"
    result = run_script(
        "report",
        "--model",
        model,
        "--reviews",
        tmp / "reviews.parquet",
        "--html",
        out / "report.html",
        "--png",
        out / "report.png",
        "--examples",
        "3",
        "--threads",
        "1",
        cwd=tmp,
    )
    assert result.returncode == 0, result.stderr
    return {"dir": tmp, "out": out, "cleaned": cleaned, "labels": labels, "model": model, "stdout": result.stdout}


def review_blocks(page):
    return re.findall(
        r'<div class="review (right|wrong)"><div class="head">(.*?)</div>\s*<div class="words">(.*?)</div></div>',
        page,
        re.S,
    )


def test_html_is_self_contained_and_lists_examples(report):
    page = (report["out"] / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"""(src|href)=|<script|<link|url\(""", page)  # nothing fetched from elsewhere
    blocks = review_blocks(page)
    kinds = [kind for kind, _, _ in blocks]
    assert kinds.count("right") == 3 and kinds.count("wrong") <= 3
    assert "Most confident right predictions" in page and "Most confident wrong predictions" in page
    for kind, head, _ in blocks:
        truth = re.search(r"truth (pos|neg)", head)[1]
        predicted = re.search(r"predicted (pos|neg) p\(pos\)=([0-9.]+)", head)
        assert (truth == predicted[1]) == (kind == "right")
        assert (float(predicted[2]) > 0.5) == (predicted[1] == "pos")
    assert "test accuracy" in page and "scored: 43" in page  # the train review is not scored


def test_html_words_are_the_cleaned_words_the_model_read_with_their_weights(report):
    page = (report["out"] / "report.html").read_text(encoding="utf-8")
    for _, head, words_html in review_blocks(page):
        review_id = int(re.search(r"review (\d+)", head)[1])
        spans = re.findall(
            r'<span(?: class="unk")? style="background:rgba\(\d+,\d+,\d+,([0-9.]+)\)" '
            r'title="([0-9.]+)[^"]*">(.*?)</span>',
            words_html,
        )
        words, _ = split_words(pa.array([report["cleaned"][review_id]]))
        expected = words.to_pylist()[: TOKENIZE["seq_len"]]  # truncate_side right keeps the head
        assert [html.unescape(w) for _, _, w in spans] == expected
        weights = np.array([float(t) for _, t, _ in spans])
        alphas = np.array([float(a) for a, _, _ in spans])
        assert abs(weights.sum() - 1) < 0.01  # attention over the words read sums to one
        assert alphas.max() == pytest.approx(MAX_ALPHA) and np.argmax(alphas) == np.argmax(weights)
    # the most confident right predictions of this model are marker-word reviews, and it looks at the markers
    first = review_blocks(page)[0][2]
    top_word = max(
        re.findall(r'rgba\(\d+,\d+,\d+,([0-9.]+)\)" title="[^"]*">(.*?)</span>', first), key=lambda t: float(t[0])
    )[1]
    assert top_word in {"wonderful", "brilliant", "superb", "awful", "terrible", "boring"}


def test_png_has_content(report):
    from matplotlib.image import imread

    png = report["out"] / "report.png"
    assert png.stat().st_size > 20_000
    pixels = imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 1000
    # white page, dark text, red shading
    rgb = pixels[..., :3].reshape(-1, 3)
    assert (rgb.min(axis=1) > 0.95).mean() > 0.3
    assert (rgb.max(axis=1) < 0.3).mean() > 0.005
    assert ((rgb[:, 0] - rgb[:, 1]) > 0.3).mean() > 0.001


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium to render the page headless")
def test_html_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            (report["out"] / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and shot.exists(), result.stderr[-500:]
    from matplotlib.image import imread

    rgb = imread(shot)[..., :3].reshape(-1, 3)
    assert ((rgb[:, 0] - rgb[:, 1]) > 0.3).mean() > 0.0005  # shaded words are visible


def test_report_refuses_a_model_without_attention(report, tmp_path):
    model = tmp_path / "lstm.pt"
    train_tiny(model, "lstm")
    result = run_script(
        "report",
        "--model",
        model,
        "--reviews",
        report["dir"] / "reviews.parquet",
        "--html",
        tmp_path / "r.html",
        "--png",
        tmp_path / "r.png",
        "--threads",
        "1",
        cwd=tmp_path,
    )
    assert_one_line_error(result, "attention")
    assert not (tmp_path / "r.html").exists()


def test_report_refuses_reviews_cleaned_differently(report, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(report["dir"] / "reviews.parquet")
    other = table.replace_schema_metadata({"imdb_rnn.clean": json.dumps(dict(CLEAN, punctuation="keep"))})
    write_table(other, tmp_path / "reviews.parquet")
    result = run_script(
        "report",
        "--model",
        report["model"],
        "--reviews",
        tmp_path / "reviews.parquet",
        "--html",
        tmp_path / "r.html",
        "--png",
        tmp_path / "r.png",
        "--threads",
        "1",
        cwd=tmp_path,
    )
    assert_one_line_error(result, "cleaned with")


def test_render_handles_reviews_without_words_and_unknown_words(tmp_path):
    from imdb_rnn.predict import Explanation
    from imdb_rnn.report import Example, render_html, render_png

    empty = Explanation(0.3, [], np.zeros(0), np.zeros(0, bool), 0)
    odd = Explanation(
        0.9, ["<b>café</b>", "$x$", "电影"], np.array([0.2, 0.5, 0.3]), np.array([True, False, False]), 10
    )
    right, wrong = [Example("right", 1, 1, odd)], [Example("wrong", 2, 1, empty)]
    page = render_html(right, wrong, {"model": "m"})
    assert "&lt;b&gt;café&lt;/b&gt;" in page and "(no words)" in page and "3 words read of 10" in page
    assert page.count('class="unk"') == 2
    render_png(right, wrong, tmp_path / "r.png")
    render_png([], [], tmp_path / "none.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    # no example at all: two section titles, each with its "None" note (7 lines), at full width
    from matplotlib.image import imread

    from imdb_rnn.report import LINE_PT, PNG_WIDTH_IN

    height, width = imread(tmp_path / "none.png").shape[:2]
    assert (height, width) == (int((7.0 * LINE_PT / 72 + 0.2) * 110), int(PNG_WIDTH_IN * 110))  # matplotlib truncates


def test_pick_examples_most_confident_right_and_wrong_both_classes():
    from imdb_rnn.report import pick_examples

    logits = np.array([30.0, 40.0, -25.0, 0.2, 50.0, -60.0, 3.0, -1.0])
    labels = np.array([1, 1, 0, 0, 0, 1, 1, 1])
    right, wrong = pick_examples(logits, labels, 3)
    # right: positives 1 (40), 0 (30), 6 (3); negatives 2 (-25): classes in turn, most confident first
    assert list(right) == [1, 2, 0]
    assert list(wrong) == [5, 4, 7]  # positives 5 (-60), 7 (-1); negatives 4 (50), 3 (0.2)
    assert [len(x) for x in pick_examples(logits, labels, 0)] == [0, 0]


def test_dvc_repro_runs_the_report_stage(dvc_repo):
    dvc_repo.commit()
    first = dvc_repo.dvc("repro", "report", timeout=900)
    assert "Running stage 'report@attention'" in first.stdout and "Running stage 'train@attention-42'" in first.stdout
    out = dvc_repo.root / "metrics" / "report"
    assert len(review_blocks((out / "attention.html").read_text(encoding="utf-8"))) >= 6
    assert (out / "attention.png").stat().st_size > 20_000
    again = dvc_repo.dvc("repro", "report")
    assert "Running stage" not in again.stdout
