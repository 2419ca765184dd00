"""imdb-predict: a tiny model trained on synthetic reviews scores new text exactly as training read it."""

import codecs
import io
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import AVX2_ONLY, assert_one_line_error, needs_native_bfloat16, script_env
from tiny_model import TOKENIZE, synthetic_reviews, train_tiny
from torch import nn
from torch.ao.nn.quantized import dynamic as qdynamic

from imdb_rnn import predict, predict_cli
from imdb_rnn.checkpoint import load_checkpoint
from imdb_rnn.pipeline import PipelineError
from imdb_rnn.predict import Predictor
from imdb_rnn.text import UNK_ID

IMDB_PREDICT = Path(sys.executable).with_name("imdb-predict")
POSITIVE = "The plot was superb and the actor brilliant, a wonderful film."
NEGATIVE = "An awful story, a terrible actor: boring from the first scene."
BAD_INPUTS = {
    "empty": "",
    "punctuation": "?!... ,;:",
    "unknown words": "zyxwv qwertyuiop grmbl",
    "emoji and other scripts": "😀🎬 这部电影 фильм φανταστικό ★★★★★",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    train_tiny(tmp / "tiny.pt", "tiny")
    train_tiny(tmp / "attention.pt", "attention", pooling="attention", cell="gru")
    (tmp / "attention").mkdir()
    shutil.copy(
        tmp / "attention.pt", tmp / "attention" / "seed42.pt"
    )  # where --arch attention looks (dvc.yaml's layout)
    return tmp


class FakeStdin:
    def __init__(self, data=b"", tty=False):
        self.buffer, self.tty = io.BytesIO(data), tty

    def isatty(self):
        return self.tty


@pytest.fixture
def run(capsys, monkeypatch):
    """Run the command in this process: (exit code, stdout, stderr). float32 unless argv asks for a precision
    (or says "--precision auto"), so that its probabilities are the library's exactly."""

    def run(*argv, stdin=b"", tty=False):
        monkeypatch.setattr(sys, "stdin", FakeStdin(stdin, tty))
        argv = [str(a) for a in argv]
        if not {"--precision", "--quantize"} & set(argv):
            argv += ["--precision", "float32"]
        with pytest.raises(SystemExit) as exit_:
            predict_cli.cli(argv)
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return exit_.value.code, out, err

    return run


def json_lines(out):
    return [json.loads(line) for line in out.splitlines()]


def one_line_error(code, err, *fragments):
    return assert_one_line_error(subprocess.CompletedProcess([], code, "", err), *fragments)


# ---------------------------------------------------------------- round trip


def test_round_trip_through_the_console_script(models):
    texts, labels = synthetic_reviews(20, seed=99)  # reviews the model never saw
    result = subprocess.run(
        [str(IMDB_PREDICT), "--model", str(models / "tiny.pt"), "--json", "--threads", "1", POSITIVE, NEGATIVE, *texts],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [r["source"] for r in rows] == [f"arg:{i}" for i in range(1, 23)]
    assert rows[0]["label"] == "pos" and rows[0]["probability"] > 0.9
    assert rows[1]["label"] == "neg" and rows[1]["probability"] < 0.1
    assert [r["label"] for r in rows[2:]] == ["pos" if y else "neg" for y in labels]


def test_python_module_reads_standard_input_one_review_per_line(models):
    result = subprocess.run(
        [sys.executable, "-m", "imdb_rnn.predict_cli", "--model", str(models / "tiny.pt"), "--threads", "1"],
        input=f"{POSITIVE}\n\n   \n{NEGATIVE}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["#", "label", "p(pos)", "source"]
    assert len(rows) == 2  # blank lines are not reviews
    first, second = rows[0].split(), rows[1].split()
    assert (first[1], first[3]) == ("pos", "stdin:1") and (second[1], second[3]) == ("neg", "stdin:4")


def test_a_review_scores_the_same_alone_and_inside_any_batch(models):
    texts, _ = synthetic_reviews(60, seed=5)
    texts += [" ".join(["film"] * n) + " superb" for n in (1, 30, 47, 48, 200)]  # around and past seq_len
    predictor = Predictor.load(models / "tiny.pt", batch_size=7)
    in_batch = predictor.probabilities(texts)
    single = Predictor.load(models / "tiny.pt", batch_size=1)
    alone = np.array([single.probabilities([t])[0] for t in texts])
    np.testing.assert_allclose(alone, in_batch, rtol=0, atol=1e-6)
    predictor.batch_size = 1000
    np.testing.assert_allclose(predictor.probabilities(texts), in_batch, rtol=0, atol=1e-6)


def test_cli_batch_and_single_agree(models, run):
    texts, _ = synthetic_reviews(10, seed=3)
    _, out, _ = run("--model", models / "tiny.pt", "--json", *texts)
    batch = [r["probability"] for r in json_lines(out)]
    for text, p in zip(texts[:3], batch):
        _, out, _ = run("--model", models / "tiny.pt", "--json", text)
        assert json_lines(out)[0]["probability"] == pytest.approx(p, abs=1e-6)


def test_stdin_dash_files_and_arguments_keep_their_order(models, run, tmp_path):
    review = tmp_path / "review.txt"
    review.write_text(NEGATIVE + "\n<br /><br />Second paragraph, still boring.")
    code, out, _ = run(
        "--model",
        models / "tiny.pt",
        "--json",
        POSITIVE,
        "-",
        "--file",
        review,
        stdin=f"{NEGATIVE}\n{POSITIVE}\n".encode(),
    )
    assert code == 0
    rows = json_lines(out)
    assert [r["source"] for r in rows] == ["arg:1", "stdin:1", "stdin:2", str(review)]
    assert [r["label"] for r in rows] == ["pos", "neg", "pos", "neg"]


def test_nothing_to_score_on_a_terminal_is_a_one_line_error(models, run):
    code, _, err = run("--model", models / "tiny.pt", tty=True)
    one_line_error(code, err, "--file")
    code, _, err = run("--model", models / "tiny.pt", stdin=b"\n\n")
    one_line_error(code, err, "nothing to score")


# ---------------------------------------------------------------- odd text


NOTHING_TO_READ = {**BAD_INPUTS, "blank": "   ", "line breaks only": "<br /><br />", "entity only": "&amp;&#39;"}


@pytest.mark.parametrize("kind", NOTHING_TO_READ)
def test_text_with_nothing_to_read_gets_no_probability(models, run, kind):
    text = NOTHING_TO_READ[kind]
    code, out, err = run("--model", models / "tiny.pt", "--json", text, POSITIVE)
    assert code == 1
    row, good = json_lines(out)
    assert row["probability"] is None and row["label"] is None and good["label"] == "pos"
    # emoji and stars are symbols, removed with the punctuation; the three words of other scripts stay
    n_words = {"unknown words": 3, "emoji and other scripts": 3}.get(kind, 0)
    reason = (
        "no words left after cleaning"
        if n_words == 0
        else f"none of its {n_words} word(s) is in the model's vocabulary"
    )
    assert row["error"].startswith(reason), row
    assert err.splitlines() == [f"error: arg:1: {row['error']}"]
    # alone, in the table format: nothing on stdout, one error line
    code, out, err = run("--model", models / "tiny.pt", text)
    assert code == 1 and out == "" and err.splitlines() == [f"error: arg:1: {row['error']}"]


def test_an_empty_review_through_the_console_script_prints_no_probability(models, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for args in ([""], ["--file", str(empty)]):
        result = subprocess.run(
            [str(IMDB_PREDICT), "--model", str(models / "tiny.pt"), "--threads", "1", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 1 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and "no words left after cleaning" in result.stderr
    assert (
        Predictor.load(models / "tiny.pt").probabilities(["", POSITIVE]).tolist()[0]
        != Predictor.load(models / "tiny.pt").probabilities(["", POSITIVE]).tolist()[0]
    )  # NaN: no probability


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_logits_of_odd_text_are_the_models_reading_of_unknown_tokens(models, kind):
    """The library still scores such text as the pipeline reads it (the evaluate stage scores every test
    review): one <unk> per word, or a single <unk> when no word is left."""
    unknown = {"empty": 1, "punctuation": 1, "unknown words": 3, "emoji and other scripts": 3}[kind]
    model, _ = load_checkpoint(models / "tiny.pt")
    with torch.no_grad():
        logit = model(torch.full((1, unknown), UNK_ID), torch.tensor([unknown])).item()
    assert Predictor.load(models / "tiny.pt").logits([BAD_INPUTS[kind]])[0] == pytest.approx(logit, abs=1e-6)


def test_text_without_known_words_reads_as_unknown_tokens_never_padding(models):
    predictor = Predictor.load(models / "tiny.pt")
    reviews, n_words = predictor.encode(list(BAD_INPUTS.values()))
    assert (reviews.lengths >= 1).all()
    for row, n in zip(reviews.ids, reviews.lengths):
        assert (row[:n] == 1).all() and (row[n:] == 0).all()  # <unk> for every word read, padding after
    assert list(n_words[2:]) == [3, 3]  # emoji and stars are symbols, not words


def test_a_100000_word_review_is_cut_as_in_training(models, run):
    words = (["superb"] + ["boring"] * 3) * 12 + ["awful"] * 99_952
    text = " ".join(words)
    predictor = Predictor.load(models / "tiny.pt")
    reviews, n_words = predictor.encode([text])
    assert n_words[0] == 100_000 and reviews.lengths[0] == TOKENIZE["seq_len"]
    head = " ".join(words[: TOKENIZE["seq_len"]])  # truncate_side right keeps the head
    assert predictor.probabilities([text])[0] == pytest.approx(predictor.probabilities([head])[0], abs=1e-6)
    code, out, _ = run("--model", models / "tiny.pt", "--json", text)
    assert code == 0 and json_lines(out)[0]["probability"] == pytest.approx(
        predictor.probabilities([head])[0], abs=1e-6
    )


def test_invalid_utf8_in_a_file_is_replaced_and_scored_with_a_warning(models, run, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Superb, superb caf\u00e9 \xff\xfe wonderful".encode("latin-1"))
    code, out, err = run("--model", models / "tiny.pt", "--json", "--file", bad)
    assert code == 0
    assert json_lines(out)[0]["label"] == "pos"
    assert "not valid UTF-8" in err and "error" not in err


def test_a_bad_file_in_a_batch_is_reported_and_the_others_scored(models, run, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text(POSITIVE)
    code, out, err = run(
        "--model",
        models / "tiny.pt",
        "--json",
        "--file",
        good,
        "--file",
        tmp_path / "missing.txt",
        "--file",
        tmp_path,
        NEGATIVE,
    )
    assert code == 1
    rows = json_lines(out)
    assert [r.get("label") for r in rows] == ["neg", "pos", None, None]
    assert rows[2] == {
        "source": str(tmp_path / "missing.txt"),
        "label": None,
        "probability": None,
        "error": "no such file",
    }
    assert "directory" in rows[3]["error"]
    assert err.splitlines() == [
        f"error: {tmp_path / 'missing.txt'}: no such file",
        f"error: {tmp_path}: is a directory, not a review file",
    ]
    # the readable table shows the good ones too
    code, out, err = run("--model", models / "tiny.pt", "--file", good, "--file", tmp_path / "missing.txt")
    assert code == 1 and "good.txt" in out and "missing.txt" not in out and "missing.txt: no such file" in err


def test_json_is_lossless_on_an_ascii_terminal(models, capsys, monkeypatch):
    text = "Superb caf\u00e9, \u201cwonderful\u201d \U0001f600"
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    monkeypatch.setattr(sys, "stdin", FakeStdin())
    assert (
        predict_cli.main(
            ["--model", str(models / "tiny.pt"), "--json", "--explain", "--model", str(models / "attention.pt"), text]
        )
        == 0
    )
    ascii_out.flush()
    raw = ascii_out.buffer.getvalue().decode("ascii")  # every byte ASCII, nothing replaced by '?'
    (row,) = [json.loads(line) for line in raw.splitlines()]
    assert "?" not in raw and row["words"][:2] == ["superb", "caf\u00e9"]


def test_a_positional_argument_naming_a_file_hints_at_file(models, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("superb").write_text(NEGATIVE)
    code, out, err = run("--model", models / "tiny.pt", "--json", "superb")
    assert code == 0 and json_lines(out)[0]["label"] == "pos"  # the word, not the negative file
    assert err.splitlines() == [
        "warning: arg:1 (superb) is scored as text, but a file of that name exists: "
        "use --file superb to score what it holds"
    ]


# ---------------------------------------------------------------- checkpoints


def test_missing_checkpoint(models, run, tmp_path):
    code, _, err = run("--model", tmp_path / "nope.pt", POSITIVE)
    one_line_error(code, err, "nope.pt", "missing")
    # run from the project root: params.yaml knows the architectures
    code, _, err = run("--arch", "bilsm", "--models-dir", tmp_path, POSITIVE)
    one_line_error(code, err, "unknown architecture 'bilsm'", "bilstm_w2v_adv")
    code, _, err = run("--arch", "bilstm_w2v_adv", "--models-dir", tmp_path, POSITIVE)
    one_line_error(code, err, "bilstm_w2v_adv/seed42.pt is missing", "dvc repro train_word2vec@bilstm_w2v_adv-42")
    code, _, err = run("--arch", "gru", "--models-dir", tmp_path, "--seed", "7", POSITIVE)
    one_line_error(code, err, "seed 7 is not among params.yaml's seeds [42]")


def test_truncated_and_foreign_checkpoints(models, run, tmp_path):
    raw = (models / "tiny.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    code, _, err = run("--model", tmp_path / "truncated.pt", POSITIVE)
    one_line_error(code, err, "truncated")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    code, _, err = run("--model", tmp_path / "text.pt", POSITIVE)
    one_line_error(code, err, "text.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    code, _, err = run("--model", tmp_path / "other.pt", POSITIVE)
    one_line_error(code, err, "not an imdb-rnn checkpoint")


def test_checkpoint_of_another_format_version(models, run, tmp_path):
    payload = torch.load(models / "tiny.pt", weights_only=True)
    torch.save(dict(payload, format=99), tmp_path / "future.pt")
    code, _, err = run("--model", tmp_path / "future.pt", POSITIVE)
    one_line_error(code, err, "format 99")
    torch.save({k: v for k, v in payload.items() if k != "vocab"}, tmp_path / "novocab.pt")
    code, _, err = run("--model", tmp_path / "novocab.pt", POSITIVE)
    one_line_error(code, err, "vocab")
    torch.save(dict(payload, tokenize=dict(payload["tokenize"], pad_side="middle")), tmp_path / "badtok.pt")
    code, _, err = run("--model", tmp_path / "badtok.pt", POSITIVE)
    one_line_error(code, err, "pad_side")


def test_bad_checkpoint_never_prints_a_traceback_from_the_real_command(models, tmp_path):
    raw = (models / "tiny.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[:1000])
    result = subprocess.run(
        [str(IMDB_PREDICT), "--model", str(tmp_path / "cut.pt"), "hello"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and result.stdout == ""
    assert_one_line_error(result, "cut.pt", "corrupt or truncated")


def test_default_model_is_the_best_recurrent_row_by_validation(models, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(POSITIVE)
    one_line_error(code, err, "--arch", "leaderboard.json")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "leaderboard.json").write_text("{}")
    code, _, err = run(POSITIVE)
    one_line_error(code, err, "--arch")
    (tmp_path / "metrics" / "leaderboard.json").write_text(json.dumps({"rows": [{"arch": "gru", "accuracy": 0.9}]}))
    code, _, err = run(POSITIVE)  # a leaderboard from before seeds names no checkpoint
    one_line_error(code, err, "comes from before seeds", "dvc repro compare")
    (tmp_path / "data" / "models").mkdir(parents=True)
    (tmp_path / "data" / "models" / "tiny.pt").write_bytes((models / "tiny.pt").read_bytes())
    # the n-gram baseline may top the board, but it has no checkpoint; of the recurrent rows the one
    # with the best validation accuracy is used, not the one ranked first by test accuracy (whose
    # checkpoint does not exist here, so picking it would fail)
    rows = [
        {"arch": "baseline", "accuracy": 1.0, "val_accuracy": 1.0, "checkpoint": None},
        {"arch": "attention", "accuracy": 0.95, "val_accuracy": 0.80, "checkpoint": "data/models/attention/seed42.pt"},
        {"arch": "tiny", "accuracy": 0.90, "val_accuracy": 0.90, "checkpoint": "data/models/tiny.pt"},
        {"arch": "gru", "accuracy": 0.85, "val_accuracy": 0.90, "checkpoint": "data/models/gru/seed42.pt"},
    ]
    for board in ({"sorted_by": "accuracy", "rows": rows}, rows):  # the compare stage's file, or bare rows
        (tmp_path / "metrics" / "leaderboard.json").write_text(json.dumps(board))
        code, out, err = run(POSITIVE, "--json")
        assert code == 0, err  # tiny ties gru on validation and ranks higher: ties go to the higher rank
        assert json_lines(out)[0]["label"] == "pos"
    rows[2] = {**rows[2], "val_accuracy": None}
    (tmp_path / "metrics" / "leaderboard.json").write_text(json.dumps(rows))
    code, _, err = run(POSITIVE)
    one_line_error(code, err, "validation accuracy", "dvc repro compare")


# ---------------------------------------------------------------- explanations and speed options


def test_explain_marks_the_marker_words(models, run):
    code, out, err = run("--model", models / "attention.pt", "--explain", "--top", "1", POSITIVE, NEGATIVE, "")
    assert code == 1 and err.splitlines() == ["error: arg:3: no words left after cleaning: nothing to score ('')"]
    lines = out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("arg:1: pos") and lines[2].startswith("arg:2: neg")
    assert lines[1].count("[[") == 1 and any(f"[[{w}]]" in lines[1] for w in ("superb", "brilliant", "wonderful"))
    assert lines[3].count("[[") == 1 and any(f"[[{w}]]" in lines[3] for w in ("awful", "terrible", "boring"))


def test_explain_shows_which_words_the_model_read_as_unknown(models, run):
    code, out, _ = run("--model", models / "attention.pt", "--explain", "--top", "1", "A superb zyxwv film")
    assert code == 0 and out.splitlines()[1].split() == ["a", "[[superb]]", "<unk:zyxwv>", "film"]
    code, out, _ = run("--model", models / "attention.pt", "--explain", "--json", "A superb zyxwv film")
    (row,) = json_lines(out)
    assert row["words"] == ["a", "superb", "zyxwv", "film"] and row["known"] == [True, True, False, True]


def test_explain_json_gives_every_word_read_and_its_weight(models, run):
    long = " ".join(["superb"] + ["film"] * 100)
    code, out, _ = run("--model", models / "attention.pt", "--explain", "--json", long)
    (row,) = json_lines(out)
    assert row["words"] == long.split()[: TOKENIZE["seq_len"]] and row["n_words"] == 101
    assert len(row["attention"]) == TOKENIZE["seq_len"] and sum(row["attention"]) == pytest.approx(1, abs=1e-4)
    code, out, _ = run("--model", models / "attention.pt", POSITIVE, "--json")
    assert json_lines(out)[0]["probability"] == pytest.approx(
        Predictor.load(models / "attention.pt").explain([POSITIVE])[0].probability, abs=1e-6
    )


def test_explain_on_a_model_without_attention_is_a_one_line_error(models, run):
    code, _, err = run("--model", models / "tiny.pt", "--explain", POSITIVE)
    one_line_error(code, err, "attention", "tiny")


def test_arch_uses_its_seed_with_the_best_validation_accuracy_unless_a_seed_is_named(
    models, run, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seeds: [42, 7, 11]\n")
    payload = torch.load(models / "tiny.pt", weights_only=True)
    (tmp_path / "tiny").mkdir()
    for seed, val, bias in ((42, 0.80, 0.0), (7, 0.90, 10.0), (11, 0.85, -10.0)):  # the bias tells the three apart
        state = {**payload["state_dict"], "head.bias": payload["state_dict"]["head.bias"] + bias}
        torch.save(
            {**payload, "state_dict": state, "metrics": {**payload["metrics"], "val_accuracy": val}},
            tmp_path / "tiny" / f"seed{seed}.pt",
        )
    probability = {}
    for extra in ([], ["--seed", "42"], ["--seed", "11"]):
        code, out, err = run("--arch", "tiny", "--models-dir", tmp_path, "--json", *extra, "the movie")
        assert code == 0, err
        probability[tuple(extra)] = json_lines(out)[0]["probability"]
    assert probability[()] > 0.99  # seed 7, the best on validation, with its +10 bias
    assert probability[("--seed", "11")] < 0.01 < probability[("--seed", "42")] < 0.99
    # only params.yaml's seeds are candidates, as on the leaderboard: a stale checkpoint on disk is not
    (tmp_path / "params.yaml").write_text("seeds: [42, 11]\n")
    code, out, _ = run("--arch", "tiny", "--models-dir", tmp_path, "--json", "the movie")
    assert (
        code == 0 and json_lines(out)[0]["probability"] == probability[("--seed", "11")]
    )  # 0.85 beats 0.80; 7 (0.90) is out
    code, _, err = run("--arch", "tiny", "--models-dir", tmp_path, "--seed", "7", "the movie")
    one_line_error(code, err, "seed 7 is not among params.yaml's seeds [42, 11]")
    with pytest.raises(SystemExit):  # a usage error: --seed picks among an architecture's seeds
        predict_cli.cli(["--model", str(models / "tiny.pt"), "--seed", "7", "the movie"])


def test_explain_defaults_to_the_attention_checkpoint(models, run):
    code, out, _ = run("--explain", "--models-dir", models, POSITIVE)
    assert code == 0 and out.startswith("arg:1: pos")


@pytest.mark.precision
@pytest.mark.parametrize(
    "option", [["--quantize"], pytest.param(["--precision", "bfloat16"], marks=needs_native_bfloat16)]
)
def test_faster_precisions_agree_with_float32(models, run, option):
    texts, labels = synthetic_reviews(30, seed=11)
    _, out, _ = run("--model", models / "tiny.pt", "--json", *texts)
    reference = [r["probability"] for r in json_lines(out)]
    code, out, err = run("--model", models / "tiny.pt", "--json", *option, *texts)
    assert code == 0, err
    rows = json_lines(out)
    assert [r["label"] for r in rows] == ["pos" if y else "neg" for y in labels]
    np.testing.assert_allclose([r["probability"] for r in rows], reference, atol=0.05)


def test_int8_on_a_model_with_attention_and_gru(models):
    predictor = Predictor.load(models / "attention.pt", precision="int8")
    explanation = predictor.explain([POSITIVE])[0]
    assert explanation.label == "pos" and explanation.weights.sum() == pytest.approx(1, abs=1e-3)


def test_leaderboard_errors_are_pipeline_errors(tmp_path):
    for bad in ("[]", '{"rows": []}', '[{"name": "x"}]', '"bilstm"', "not json"):
        (tmp_path / "lb.json").write_text(bad)
        with pytest.raises(PipelineError, match="--arch"):
            predict.resolve_checkpoint(leaderboard=tmp_path / "lb.json")


# ---------------------------------------------------------------- typographic text


def test_typographic_text_scores_as_its_ascii_form_through_the_console_script(models, tmp_path):
    typed = "I didn\u2019t like it, it wasn\u2019t good \u2014 a superb\u2026 no, &quot;boring&quot; film"
    ascii_form = "I didn't like it, it wasn't good - a superb... no, \"boring\" film"
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffSuperb film, I loved it".encode("utf-8"))
    result = subprocess.run(
        [
            str(IMDB_PREDICT),
            "--model",
            str(models / "tiny.pt"),
            "--json",
            "--threads",
            "1",
            typed,
            ascii_form,
            "Superb film, I loved it",
            "--file",
            str(bom),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    typed_row, ascii_row, plain_row, bom_row = json_lines(result.stdout)
    assert typed_row["probability"] == ascii_row["probability"] and typed_row["label"] == ascii_row["label"]
    assert bom_row["probability"] == plain_row["probability"]


def test_a_checkpoint_made_before_normalize_reads_text_as_it_was_trained(models, tmp_path):
    payload = torch.load(models / "tiny.pt", weights_only=True)
    old_clean = {k: v for k, v in payload["clean"].items() if k != "normalize"}
    torch.save(dict(payload, clean=old_clean), tmp_path / "old.pt")
    old, new = Predictor.load(tmp_path / "old.pt"), Predictor.load(models / "tiny.pt")
    typed = "A superb\u2019 film"  # the old cleaning keeps the curly apostrophe: "superb’" is not a known word
    assert old.encode([typed])[0].ids[0, 1] == UNK_ID and new.encode([typed])[0].ids[0, 1] != UNK_ID


def model_kinds(model):
    """(floating parameter dtypes, recurrent/linear module classes) of a model as it will run."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    kinds = {
        type(m)
        for m in model.modules()
        if isinstance(m, (nn.RNNBase, nn.Linear, qdynamic.LSTM, qdynamic.GRU, qdynamic.Linear))
    }
    return dtypes, kinds


@pytest.mark.precision
@needs_native_bfloat16
def test_auto_precision_is_bfloat16_where_the_cpu_runs_it():
    assert predict.resolve_precision("auto", "cpu") == "bfloat16"
    assert (
        predict.resolve_precision("float32", "cpu") == "float32" and predict.resolve_precision("int8", "cpu") == "int8"
    )
    assert predict_cli.parse_args(["a review"]).precision == "float32"  # the default: the checkpoint's own arithmetic


@pytest.mark.precision
def test_without_native_bfloat16_auto_is_float32_and_bfloat16_is_refused(monkeypatch, models):
    monkeypatch.setattr(
        torch.cpu, "_is_amx_tile_supported", lambda: False
    )  # a CPU without it: nothing runs in bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert predict.resolve_precision("auto", "cpu") == "float32"
    assert predict.resolve_precision("int8", "cpu") == "int8"
    with pytest.raises(PipelineError, match="precision is bfloat16, but this CPU has no native bfloat16"):
        Predictor.load(models / "tiny.pt", precision="bfloat16")


@pytest.mark.precision
def test_the_console_script_refuses_bfloat16_where_the_kernels_lack_it_in_one_line(models):
    """Through the installed command, with oneDNN held to AVX2 (what a CPU without AVX-512 runs), on any CPU."""
    result = subprocess.run(
        [str(IMDB_PREDICT), "--model", str(models / "tiny.pt"), "--precision", "bfloat16", POSITIVE],
        env=script_env(AVX2_ONLY),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert_one_line_error(result, "precision is bfloat16, but", "use float32, or auto")
    auto = subprocess.run(
        [str(IMDB_PREDICT), "--model", str(models / "tiny.pt"), "--precision", "auto", "--json", POSITIVE],
        env=script_env(AVX2_ONLY),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert auto.returncode == 0 and json_lines(auto.stdout)[0]["precision"] == "float32", auto.stderr


@pytest.mark.precision
@pytest.mark.parametrize(
    "option, precision",
    [
        (["--precision", "auto"], predict.resolve_precision("auto", "cpu")),
        (["--precision", "float32"], "float32"),
        pytest.param(["--precision", "bfloat16"], "bfloat16", marks=needs_native_bfloat16),
        (["--quantize"], "int8"),
        (["--precision", "int8"], "int8"),
    ],
)
def test_the_precision_asked_for_is_the_one_that_runs(models, run, monkeypatch, option, precision):
    ran = []
    apply = predict.apply_precision
    monkeypatch.setattr(predict, "apply_precision", lambda model, p: ran.append(apply(model, p)) or ran[-1])
    code, out, err = run("--model", models / "tiny.pt", "--json", *option, POSITIVE)
    assert code == 0, err
    (model,) = ran
    dtypes, kinds = model_kinds(model)
    expected = {
        "float32": ({torch.float32}, {nn.LSTM, nn.Linear}),
        "bfloat16": ({torch.bfloat16}, {nn.LSTM, nn.Linear}),
        # int8: weights packed as int8 inside quantized modules; only the embedding stays float32
        "int8": ({torch.float32}, {qdynamic.LSTM, qdynamic.Linear}),
    }[precision]
    assert (dtypes, kinds) == expected
    if precision == "int8":
        assert [name for name, _ in model.named_parameters()] == ["embedding.weight"]
    reference = Predictor.load(models / "tiny.pt").probabilities([POSITIVE])[0]
    # float32 is the checkpoint's arithmetic exactly; the others round differently
    assert (json_lines(out)[0]["probability"] == round(float(reference), 6)) == (precision == "float32")
    assert json_lines(out)[0]["precision"] == precision  # and the output says which ran


def test_int8_quantizes_the_gru_and_attention_layers(models):
    predictor = Predictor.load(models / "attention.pt", precision="int8")
    _, kinds = model_kinds(predictor.model)
    assert kinds == {qdynamic.GRU, qdynamic.Linear}
    assert len(predictor.model.layers[0]) == 2  # both directions quantized, none left out
    assert model_kinds(Predictor.load(models / "attention.pt").model) == ({torch.float32}, {nn.GRU, nn.Linear})


@pytest.mark.precision
@needs_native_bfloat16
def test_bfloat16_casts_the_gru_and_attention_layers(models):
    bf16 = Predictor.load(models / "attention.pt", precision="bfloat16")
    assert model_kinds(bf16.model) == ({torch.bfloat16}, {nn.GRU, nn.Linear})


def test_cleaned_text_is_read_as_it_is_and_raw_text_is_cleaned(models):
    predictor = Predictor.load(models / "tiny.pt")
    vocab = {word: i for i, word in enumerate(predictor.payload["vocab"])}
    raw = ["SUPERB film!<br /><br />Awful"]
    reviews, _ = predictor.encode(raw)  # cleaned as in training: lowercase, no <br />, no punctuation
    assert reviews.ids[0, :4].tolist() == [vocab["superb"], vocab["film"], vocab["awful"], 0]
    reviews, _ = predictor.encode(["Superb film"], cleaned=True)  # already clean: "Superb" is not a word we know
    assert reviews.ids[0, :3].tolist() == [UNK_ID, vocab["film"], 0]
    unknown_then_film = predictor.logits(["qqq film"])
    assert predictor.logits(["Superb film"], cleaned=True) == unknown_then_film
    assert (
        predictor.probabilities(["Superb film"], cleaned=True)
        == torch.sigmoid(torch.from_numpy(unknown_then_film)).numpy()
    )
    assert predictor.logits(raw) == predictor.logits(["superb film awful"], cleaned=True)


def test_right_padded_checkpoints_read_left_aligned_reviews(models):
    model, payload = load_checkpoint(models / "tiny.pt")
    left = Predictor(model, payload)
    right = Predictor(model, dict(payload, tokenize=dict(payload["tokenize"], pad_side="right")))
    texts = [POSITIVE, NEGATIVE, "superb"]
    for predictor in (left, right):
        reviews, _ = predictor.encode(texts)
        assert reviews.lengths.tolist() == [11, 11, 1]
        assert (reviews.ids[np.arange(48)[None, :] >= reviews.lengths[:, None]] == 0).all()  # padding after the words
        assert (reviews.ids[np.arange(48)[None, :] < reviews.lengths[:, None]] > 0).all()
    np.testing.assert_array_equal(left.encode(texts)[0].ids, right.encode(texts)[0].ids)


def test_nothing_to_score_gives_empty_float_arrays(models):
    predictor = Predictor.load(models / "tiny.pt")
    for scores in (predictor.logits([]), predictor.probabilities([])):
        assert scores.shape == (0,) and scores.dtype == np.float32


@pytest.mark.precision
def test_apply_precision_leaves_the_float32_model_as_it_was_and_names_its_refusals(models):
    model, _ = load_checkpoint(models / "tiny.pt")
    before = {name: p.clone() for name, p in model.state_dict().items()}
    for precision in (
        ("int8", "bfloat16") if predict.native_bfloat16("cpu") else ("int8",)
    ):  # bfloat16: only where it runs
        assert predict.apply_precision(model, precision) is not model
    state = model.state_dict()  # still the float32 model, weight for weight
    assert all(state[name].dtype == torch.float32 and torch.equal(state[name], p) for name, p in before.items())
    with pytest.raises(PipelineError) as refused:
        predict.apply_precision(model, "fp8")
    assert str(refused.value) == "unknown precision 'fp8': choose one of auto, float32, bfloat16, int8"
    with pytest.raises(PipelineError) as refused:  # any device but the CPU (meta stands in for a GPU here)
        predict.apply_precision(model.to("meta"), "int8")
    assert str(refused.value) == "int8 quantization runs on the CPU only: add --device cpu"


def test_head_and_tail_truncation_reads_and_explains_the_same_words(models, tmp_path):
    payload = torch.load(models / "attention.pt", weights_only=True)
    seq_len = payload["tokenize"]["seq_len"]
    payload["tokenize"] = dict(payload["tokenize"], truncate_side="both", head_tokens=5)
    torch.save(payload, tmp_path / "both.pt")
    predictor = Predictor.load(tmp_path / "both.pt")
    words = [f"superb{i}" if i % 7 else "awful" for i in range(100)]
    read = words[:5] + words[100 - (seq_len - 5) :]  # the first 5, then the end
    explanation = predictor.explain([" ".join(words)])[0]
    assert explanation.words == read
    assert predictor.probabilities([" ".join(words)])[0] == pytest.approx(
        predictor.probabilities([" ".join(read)])[0], abs=1e-6
    )
    del payload["tokenize"]["head_tokens"]
    torch.save(payload, tmp_path / "incomplete.pt")
    with pytest.raises(PipelineError, match="head_tokens is missing"):
        Predictor.load(tmp_path / "incomplete.pt")


def test_lanes_score_every_review_as_one_lane_does_in_the_order_given(models, request):
    texts, _ = synthetic_reviews(90, seed=11)
    texts += list(BAD_INPUTS.values()) + [" ".join(["film"] * n) + " superb" for n in (1, 47, 200)]
    texts = texts[::-1]  # not in length order: the lanes' shares must be put back where they came from
    one = Predictor.load(models / "tiny.pt", batch_size=4, lanes=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1, which is what each lane sets: a leak must show
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    for lanes in (2, 3):
        many = Predictor.load(models / "tiny.pt", batch_size=4, lanes=lanes)
        (p1, why1), (pn, whyn) = one.score(texts), many.score(texts)
        np.testing.assert_allclose(pn, p1, rtol=0, atol=1e-6)  # NaN where one lane gives NaN
        assert whyn == why1 and sum(w is not None for w in whyn) == len(BAD_INPUTS)
        np.testing.assert_allclose(many.logits(texts), one.logits(texts), rtol=0, atol=1e-6)
    assert torch.get_num_threads() == 2  # a lane's one thread is its own, not the caller's
    with ThreadPoolExecutor(1) as pool:  # nor the default of threads started afterwards
        assert pool.submit(torch.get_num_threads).result() == 2
    assert many.probabilities([POSITIVE]).shape == (1,)  # fewer reviews than lanes


@pytest.mark.parametrize(
    "lanes, reviews, device, expected",
    [
        (0, 2 * 64 * predict.MIN_LANE_BATCHES, "cpu", 2),  # auto: one lane a thread, each with enough batches
        (0, 2 * 64 * predict.MIN_LANE_BATCHES - 1, "cpu", 1),  # too few reviews to share out
        (3, 10, "cpu", 3),  # asked for
        (2, 10**6, "cuda", 1),  # a GPU scores in one stream
        (3, 1, "cpu", 1),  # never more lanes than reviews: a lane with none would have nothing to score
    ],
)
def test_lanes_for(monkeypatch, lanes, reviews, device, expected):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert predict.lanes_for(lanes, reviews, 64, device) == expected


def test_bad_lanes_are_one_line_errors(models, run):
    code, _, err = run("--model", models / "tiny.pt", "--lanes", "-1", POSITIVE)
    assert code == 2 and "--lanes" in err
    with pytest.raises(PipelineError, match="lanes must be 0"):
        Predictor.load(models / "tiny.pt", lanes=-1)


def test_lanes_through_the_command_give_one_lanes_answers(models, run):
    texts, _ = synthetic_reviews(40, seed=13)
    _, out, _ = run("--model", models / "tiny.pt", "--json", "--batch-size", "3", "--lanes", "1", *texts)
    _, many, _ = run("--model", models / "tiny.pt", "--json", "--batch-size", "3", "--lanes", "2", *texts)
    assert [r["probability"] for r in json_lines(many)] == pytest.approx(
        [r["probability"] for r in json_lines(out)], abs=1e-6
    )


def test_a_seed_without_a_checkpoint_is_named_before_the_others_are_chosen_from(models, run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seeds: [42, 7, 11]\n")
    (tmp_path / "tiny").mkdir()
    payload = torch.load(models / "tiny.pt", weights_only=True)
    for seed in (42, 11):
        torch.save(payload, tmp_path / "tiny" / f"seed{seed}.pt")
    code, out, err = run("--arch", "tiny", "--models-dir", tmp_path, "--json", "the movie")
    assert code == 0 and len(json_lines(out)) == 1
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert (
        len(warning) == 1
        and "seed(s) 7 for tiny with no checkpoint" in warning[0]
        and "among seed(s) 42, 11" in warning[0]
    )
    torch.save(payload, tmp_path / "tiny" / "seed7.pt")
    code, _, err = run("--arch", "tiny", "--models-dir", tmp_path, "the movie")
    assert code == 0 and "warning" not in err  # every seed trained: nothing to say


# ---------------------------------------------------------------- a Unix tool: pipes, options, encodings


def predict_process(models, *args, **kwargs):
    """The installed imdb-predict on the tiny model; output captured unless `stdout` is given."""
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run(
        [str(IMDB_PREDICT), "--model", str(models / "tiny.pt"), "--threads", "1", *map(str, args)],
        timeout=120,
        **kwargs,
    )


def test_standard_input_is_one_review_per_newline_whatever_else_a_line_holds(models):
    """U+0085, U+2028, U+2029, form feeds and a CRLF ending are inside a line or end it: one record per
    input line, stdin:N is line N (blank lines are skipped, not renumbered)."""
    texts, labels = synthetic_reviews(12, seed=21)
    separators = ["\x85", "\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x1e"]
    lines = [f"{t}{separators[i % len(separators)]}uh" if i % 2 else t for i, t in enumerate(texts)]
    lines.insert(3, "")  # a blank line 4
    data = ("\n".join(lines[:6]) + "\r\n" + "\n".join(lines[6:]) + "\n").encode()
    result = predict_process(models, "--json", "-", input=data)
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout.decode())
    expected = [f"stdin:{n}" for n in range(1, len(lines) + 1) if n != 4]
    assert [r["source"] for r in rows] == expected and len(rows) == len(texts)
    assert [r["label"] for r in rows] == ["pos" if y else "neg" for y in labels]


def test_a_reader_that_goes_away_ends_it_quietly(models, tmp_path):
    texts, _ = synthetic_reviews(1500, seed=4)  # output larger than a pipe's buffer (64 KiB)
    (tmp_path / "reviews.txt").write_text("\n".join(texts) + "\n")
    shell = (
        f"'{IMDB_PREDICT}' --model '{models / 'tiny.pt'}' --threads 1 --json - < reviews.txt | head -n 1; "
        'echo "status ${PIPESTATUS[0]}"'
    )
    result = subprocess.run(["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    first, status = result.stdout.splitlines()
    assert json.loads(first)["source"] == "stdin:1" and result.stderr == ""
    assert status in ("status 0", "status 141")
    for args in (["--json", "-"], [POSITIVE]):  # large, and small output: the pipe is closed before the first write
        process = subprocess.Popen(
            [str(IMDB_PREDICT), "--model", str(models / "tiny.pt"), "--threads", "1", *args],
            stdin=open(tmp_path / "reviews.txt", "rb"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        process.stdout.close()
        assert process.wait(timeout=300) in (0, 141) and process.stderr.read() == b""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_failed_write_is_one_error_line(models):
    for args in ([POSITIVE], ["--json", *synthetic_reviews(2000, seed=4)[0]]):
        with open("/dev/full", "w") as full:
            result = predict_process(models, *args, stdout=full, stderr=subprocess.PIPE, text=True)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            "error: cannot write the results to standard output: No space left on device"
        ]


def test_review_text_after_a_double_dash_is_never_an_option(models):
    result = predict_process(
        models, "--json", "--", "-awful, boring", "--superb", "-", text=True, input=f"{POSITIVE}\n"
    )
    assert result.returncode == 0, result.stderr
    rows = json_lines(result.stdout)
    assert [r["source"] for r in rows] == ["arg:1", "arg:2", "stdin:1"] and [r["label"] for r in rows] == [
        "neg",
        "pos",
        "pos",
    ]
    refused = predict_process(models, "-awful", text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    line = assert_one_line_error(refused, "unrecognized arguments: -awful", "goes after '--'")
    assert "--help" in line


@pytest.mark.parametrize("abbreviated", ["--js", "--arc=gru", "--mod"])
def test_options_are_never_abbreviated(models, abbreviated):
    result = predict_process(models, abbreviated, POSITIVE, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert_one_line_error(result, abbreviated.split("=")[0])
    assert "--help" in predict_process(models, "--help", text=True).stdout.replace("\n", " ")  # and help says '--'
    assert "after '--'" in " ".join(predict_process(models, "--help", text=True).stdout.split())


def test_a_utf16_file_scores_as_its_utf8_twin_and_nul_laden_text_is_refused(models, tmp_path):
    text = "Brilliant film, I loved it: superb, wonderful \u2014 caf\u00e9"
    files = {
        "utf8.txt": text.encode("utf-8"),
        "utf8-bom.txt": codecs.BOM_UTF8 + text.encode("utf-8"),
        "utf16.txt": text.encode("utf-16"),  # with the platform's byte-order mark, as Notepad's "Unicode"
        "utf16be.txt": codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
        "utf16le.txt": codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    args = [arg for name in files for arg in ("--file", tmp_path / name)]
    result = predict_process(models, "--json", *args, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert len({r["probability"] for r in json_lines(result.stdout)}) == 1  # the same review, read the same way
    (tmp_path / "no-bom.txt").write_bytes(text.encode("utf-16-le"))  # NUL after every ASCII letter
    (tmp_path / "broken16.txt").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le")[:-1])  # an odd byte count
    result = predict_process(
        models,
        "--json",
        "--file",
        tmp_path / "no-bom.txt",
        "--file",
        tmp_path / "broken16.txt",
        "--file",
        tmp_path / "utf8.txt",
        text=True,
    )
    assert result.returncode == 1
    no_bom, broken, good = json_lines(result.stdout)
    assert (
        no_bom["probability"] is None and "NUL characters" in no_bom["error"] and "save it as UTF-8" in no_bom["error"]
    )
    assert broken["probability"] is None and "not valid UTF-16" in broken["error"]
    assert good["label"] == "pos"
    nul_line = predict_process(models, "--json", text=True, input=f"{POSITIVE}\nsuperb\x00film\n")
    assert [r["source"] for r in json_lines(nul_line.stdout)] == ["stdin:1", "stdin:2"]
    assert json_lines(nul_line.stdout)[1]["probability"] is None and nul_line.returncode == 1


def test_an_unexpected_error_is_one_line_and_its_traceback_is_asked_for(models, monkeypatch, capsys):
    def broken(self, texts):
        raise RuntimeError("the kernel failed\nsecond line")

    monkeypatch.setattr(Predictor, "score", broken)
    monkeypatch.setattr(sys, "stdin", FakeStdin())
    with pytest.raises(SystemExit) as exit_:
        predict_cli.cli(["--model", str(models / "tiny.pt"), POSITIVE])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: unexpected RuntimeError: the kernel failed (rerun with --debug for the traceback, and report it)"
    ]
    with pytest.raises(
        RuntimeError, match="the kernel failed"
    ):  # --debug: the exception itself, so Python prints its traceback
        predict_cli.cli(["--model", str(models / "tiny.pt"), "--debug", POSITIVE])


# ---------------------------------------------------------------- checkpoints not to be trusted blindly


@pytest.mark.parametrize(
    "change, says",
    [
        ({"num_layers": 200_000}, "model_config.num_layers must be <= 8, got 200000"),
        (
            {"hidden_dim": 8192},
            "its model_config asks for",
        ),  # within the schema, but not these weights: gigabytes if built
        ({"cell": "transformer"}, "model_config.cell must be one of"),
    ],
)
def test_a_checkpoint_asking_for_a_model_its_weights_do_not_fit_is_refused_at_once(models, tmp_path, change, says):
    payload = torch.load(models / "tiny.pt", weights_only=True)
    payload["model_config"] = {**payload["model_config"], **change}
    torch.save(payload, tmp_path / "bad.pt")
    start = time.perf_counter()
    with pytest.raises(PipelineError, match="does not match its model settings") as refused:
        load_checkpoint(tmp_path / "bad.pt")
    assert time.perf_counter() - start < 1.0 and says in str(refused.value)  # nothing built before the check
    result = predict_process(models, "--model", tmp_path / "bad.pt", POSITIVE, text=True)
    assert_one_line_error(result, "bad.pt does not match its model settings", says, "retrain it")


def test_a_checkpoint_served_under_another_architectures_name_is_refused(models, tmp_path):
    """A file swapped in a DVC remote (the attention model's bytes under gru's hash) reaches data/models/gru/."""
    payload = torch.load(models / "attention.pt", weights_only=True)
    payload["metrics"] = {**payload["metrics"], "seed": 42}
    served = tmp_path / "models"  # dvc.yaml's layout: models/<arch>/seed<seed>.pt
    for arch in ("gru", "attention"):
        (served / arch).mkdir(parents=True)
    torch.save(payload, served / "gru/seed42.pt")
    torch.save(payload, served / "gru/seed7.pt")
    torch.save(payload, served / "attention/seed7.pt")
    result = subprocess.run(
        [str(IMDB_PREDICT), "--arch", "gru", "--seed", "42", "--models-dir", str(served), POSITIVE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert_one_line_error(
        result, "gru/seed42.pt holds attention seed 42, not the gru seed 42 its path names", "verify true"
    )
    for path in (served / "gru/seed7.pt", served / "attention/seed7.pt"):  # another architecture, another seed
        with pytest.raises(PipelineError, match="its path names"):
            load_checkpoint(path)
    torch.save(payload, served / "attention/seed42.pt")
    assert load_checkpoint(served / "attention/seed42.pt")[1]["arch"] == "attention"  # where it belongs
    torch.save(payload, tmp_path / "seed7.pt")  # a copy outside a models folder (dvc get, a download) names nothing
    assert load_checkpoint(tmp_path / "seed7.pt")[1]["arch"] == "attention"


def test_running_out_of_memory_is_one_line_that_names_the_setting(models, run, monkeypatch):
    def allocate(self, texts):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 52428800000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(Predictor, "score", allocate)
    code, out, err = run("--model", models / "tiny.pt", "--batch-size", "100000", POSITIVE)
    assert code == 1 and out == ""
    one_line_error(
        code, err, "out of memory (DefaultCPUAllocator could not allocate 48.83 GiB)", "imdb-predict --batch-size"
    )


def test_a_utf8_file_with_a_byte_order_mark_and_a_bad_byte_is_scored_with_the_warning(models, run, tmp_path):
    bad = tmp_path / "notepad.txt"
    bad.write_bytes(codecs.BOM_UTF8 + "Superb, wonderful film \x96 truly".encode().replace(b"\xc2\x96", b"\x96"))
    code, out, err = run("--model", models / "tiny.pt", "--json", "--file", bad)
    assert code == 0 and json_lines(out)[0]["label"] == "pos"
    assert "not valid UTF-8" in err and "1 bad byte sequence(s) replaced" in err


def test_the_package_offers_load_predictor_choosing_as_imdb_predict_does(models, tmp_path):
    import imdb_rnn
    from imdb_rnn import Predictor, load_predictor

    assert Predictor is predict.Predictor
    given = load_predictor(arch="attention", seed=42, models_dir=models, params=tmp_path / "none.yaml")
    assert isinstance(given, Predictor) and given.arch == "attention"
    board = tmp_path / "leaderboard.json"
    board.write_text(
        json.dumps(
            {
                "rows": [  # the top row by test is not the one by validation
                    {"arch": "tiny", "checkpoint": str(models / "tiny.pt"), "val_accuracy": 0.80},
                    {"arch": "baseline", "checkpoint": None, "val_accuracy": 0.99},
                    {"arch": "attention", "checkpoint": str(models / "attention" / "seed42.pt"), "val_accuracy": 0.90},
                ]
            }
        )
    )
    best = load_predictor(leaderboard=board)
    assert best.arch == "attention"
    np.testing.assert_array_equal(best.logits(["a wonderful film"]), given.logits(["a wonderful film"]))
    with pytest.raises(AttributeError, match="module 'imdb_rnn' has no attribute 'Predicter'"):
        imdb_rnn.Predicter
    # a stage that imports one module does not load the predictor with it
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, imdb_rnn.params; print('imdb_rnn.predict' in sys.modules)"],
        capture_output=True,
        text=True,
        env=script_env(),
    )
    assert probe.stdout == "False\n", probe.stderr
