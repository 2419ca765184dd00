"""Word2Vec pretraining: similar contexts give similar vectors; the stage is deterministic and never
reads test reviews."""

import json
import random

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import assert_one_line_error, write_params

from imdb_rnn.embeddings import embedding_matrix, nearest_neighbours, train_word2vec
from imdb_rnn.pretrained import load_pretrained
from imdb_rnn.text import vocab_sha256

PARAMS = {
    "dim": 16,
    "window": 2,
    "min_count": 1,
    "sg": 0,
    "negative": 5,
    "epochs": 5,
    "workers": 1,
    "seed": 42,
    "sources": ["train", "unsup"],
}


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def synonym_corpus(n=3000, seed=0):
    """'good'/'great' share one set of contexts, 'table'/'chair' another; fillers vary around them."""
    rng = random.Random(seed)
    fillers = "so and then but yes well oh".split()
    opinion = ["the", "film", "was", None, "and", "fun", "to", "watch"]
    furniture = ["he", "sat", "on", "the", None, "by", "the", "wall"]
    sentences = []
    for _ in range(n):
        template, choices = (opinion, ("good", "great")) if rng.random() < 0.5 else (furniture, ("table", "chair"))
        words = [w or rng.choice(choices) for w in template]
        sentences.append([rng.choice(fillers)] + words + [rng.choice(fillers)])
    return sentences


def test_words_in_the_same_contexts_get_close_vectors():
    model, timing = train_word2vec(synonym_corpus(), {**PARAMS, "epochs": 10}, log=lambda line: None)
    v = model.wv
    same = [cosine(v["good"], v["great"]), cosine(v["table"], v["chair"])]
    different = [cosine(v[a], v[b]) for a in ("good", "great") for b in ("table", "chair")]
    assert min(same) > max(different) + 0.3, (same, different)
    assert timing["words_processed"] == 10 * sum(map(len, synonym_corpus()))

    vocab = ["<pad>", "<unk>", "good", "great", "table", "chair", "neverseen"]
    matrix, missing = embedding_matrix(v, vocab, seed=1)
    assert missing == ["<unk>", "neverseen"]  # neither occurs in this corpus
    assert not matrix[0].any() and matrix[6].any()
    assert np.array_equal(matrix[2], v["good"])
    usable = np.array([False, False, True, True, True, True, False])
    near = nearest_neighbours(matrix, vocab, ["good", "table", "absent"], usable, k=2)
    assert set(near) == {"good", "table"}  # a probe outside the vocabulary is skipped
    assert list(near["good"])[0] == "great" and list(near["table"])[0] == "chair"
    assert len(near["good"]) == 2 and near["good"]["great"] == pytest.approx(cosine(v["good"], v["great"]), abs=1e-3)


def stage_params(tmp_path, **change):
    return write_params(tmp_path / "params.yaml", {"pretrain_embeddings": {**PARAMS, **change}})


def test_stage_on_tiny_data_is_deterministic_and_skips_test_reviews(tiny_data, tmp_path, run_stage):
    reviews = tiny_data / "data/clean/reviews.parquet"
    vocab = (tiny_data / "data/vocab/vocab.txt").read_text().splitlines() + ["neverseen"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    stage_params(tmp_path)
    outputs = []
    for run, hashseed in ((1, "1"), (2, "2")):  # Python's string hash salt must not matter
        result = run_stage(
            "pretrain_embeddings",
            "--reviews",
            reviews,
            "--vocab",
            "vocab.txt",
            "--out",
            f"run{run}/w2v.pt",
            "--metrics",
            f"run{run}/w2v.json",
            env={"PYTHONHASHSEED": hashseed},
        )
        assert result.returncode == 0, result.stderr
        assert "epoch 5/5" in result.stdout and "words/s" in result.stdout
        outputs.append((tmp_path / f"run{run}/w2v.pt").read_bytes())
    assert outputs[0] == outputs[1]

    payload = load_pretrained(tmp_path / "run1/w2v.pt", "word2vec")
    assert payload["config"] == {"dim": PARAMS["dim"]} and payload["vocab_sha256"] == vocab_sha256(vocab)
    matrix = payload["weights"].numpy()
    assert matrix.dtype == np.float32 and matrix.shape == (len(vocab), PARAMS["dim"])
    assert not matrix[0].any() and np.all(np.abs(matrix[1:]).sum(axis=1) > 0)
    report = json.loads((tmp_path / "run1/w2v.json").read_text())
    unseen = ["<unk>"] if report["unk_tokens"] == 0 else []  # the tiny vocabulary may hold every word
    assert report["missing_examples"] == unseen + ["neverseen"] and report["words_missing"] == len(unseen) + 1
    assert report["words_covered"] + report["words_missing"] + 1 == report["vocab_size"] == len(vocab)
    # exactly the words of the train and unsup reviews: not one test review was read
    table = pq.read_table(reviews)
    seen = table.filter(pc.is_in(table["split"], value_set=pc.cast(["train", "unsup"], table["split"].type)))
    assert report["reviews"] == seen.num_rows < table.num_rows
    assert report["tokens"] == pc.sum(seen["n_words"]).as_py()
    assert set(report["neighbours"]) == {"awful", "boring"}  # the probes the tiny vocabulary holds
    assert all(len(near) == 5 for near in report["neighbours"].values())


@pytest.mark.parametrize("sources", [["train", "test"], ["test"]])
def test_test_reviews_are_refused(tmp_path, run_stage, sources):
    stage_params(tmp_path, sources=sources)
    result = run_stage("pretrain_embeddings", "--reviews", "nowhere.parquet", "--vocab", "nowhere.txt")
    assert_one_line_error(result, "pretrain_embeddings.sources", "test reviews must stay unseen")


def test_missing_inputs(tiny_data, tmp_path, run_stage):
    stage_params(tmp_path)
    result = run_stage(
        "pretrain_embeddings", "--reviews", tiny_data / "data/clean/reviews.parquet", "--vocab", "no/vocab.txt"
    )
    assert_one_line_error(result, "no/vocab.txt", "dvc repro")
    result = run_stage(
        "pretrain_embeddings", "--reviews", "no/reviews.parquet", "--vocab", tiny_data / "data/vocab/vocab.txt"
    )
    assert_one_line_error(result, "no/reviews.parquet", "dvc repro")
    assert not (tmp_path / "data").exists()  # nothing half-written


def test_no_training_reviews(tiny_data, tmp_path, run_stage):
    table = pq.read_table(tiny_data / "data/clean/reviews.parquet")
    pq.write_table(table.filter(pc.equal(table["split"], "test")), tmp_path / "only_test.parquet")
    stage_params(tmp_path)
    result = run_stage(
        "pretrain_embeddings", "--reviews", "only_test.parquet", "--vocab", tiny_data / "data/vocab/vocab.txt"
    )
    assert_one_line_error(result, "only_test.parquet", "train/unsup")
