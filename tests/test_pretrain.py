"""Learning from unlabelled text: the language model learns, and what it learns reaches the classifier."""

import random

import numpy as np
import pyarrow as pa
import pytest
import torch
from synthetic import FILLER
from tiny_model import configs
from torch import nn

from imdb_rnn.batches import Reviews, align_left
from imdb_rnn.config import ModelConfig
from imdb_rnn.lm import LanguageModel, check_settings, pretrain, sequences
from imdb_rnn.pipeline import PipelineError
from imdb_rnn.pretrained import check_pretrained, initialise, load_pretrained, save_pretrained
from imdb_rnn.text import encode, pad, split_words, vocab_sha256
from imdb_rnn.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: more threads only add overhead

SEEN = {1: "wonderful", 0: "awful"}  # the only sentiment words in the labelled reviews
UNSEEN = {1: "superb", 0: "dreadful"}  # met in unlabelled text only, then in the validation reviews
VOCAB = ["<pad>", "<unk>"] + FILLER + ["loved", "hated"] + list(SEEN.values()) + list(UNSEEN.values())
LM_PARAMS = {"seed": 0, "lr": 0.01, "batch_size": 32, "bptt": 24, "max_tokens": 0, "grad_clip": 1.0, "epochs": 10}
ARCH = {
    "cell": "lstm",
    "bidirectional": False,
    "num_layers": 1,
    "pooling": "max",
    "embed_dim": 16,
    "hidden_dim": 16,
    "dropout": 0.0,
    "embed_dropout": 0.0,
    "lr": 0.01,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "batch_size": 16,
    "epochs": 3,
    "patience": 3,
    "seq_len": 32,
    "freeze_embeddings": False,
    "adversarial_eps": 0.0,
}
COMMON = {"seed": 0, "device": "cpu", "threads": 1, "eval_batch_size": 64, "bucket_pool": 4, "processes": 1}


def sentence(rng, marker, tail):
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
    words.insert(rng.randrange(len(words) + 1), marker)
    return " ".join(words + tail)


def unlabelled_stream(n, seed=0):
    """Unlabelled text where every sentiment word, seen or unseen, is followed by loved/hated."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        label = rng.randint(0, 1)
        marker = rng.choice([SEEN[label], UNSEEN[label]])
        texts.append(sentence(rng, marker, ["loved" if label else "hated", "it"]))
    words, _ = split_words(pa.array(texts))
    return encode(words, VOCAB)


def labelled(markers, n, seed):
    rng = random.Random(seed)
    labels = np.array([i % 2 for i in range(n)], np.int8)
    words, lengths = split_words(pa.array([sentence(rng, markers[y], []) for y in labels]))
    ids, kept = pad(encode(words, VOCAB), lengths, ARCH["seq_len"], "right", "right")
    return Reviews(align_left(ids, kept, "right"), kept, labels)


@pytest.fixture(scope="module")
def language_model():
    torch.manual_seed(0)
    rows = sequences(unlabelled_stream(4000), LM_PARAMS["bptt"])
    model = LanguageModel(
        len(VOCAB), 16, 16, "lstm", 1, 0.0, check_settings({"sources": ["unsup"], "cutoffs": [8]}, len(VOCAB))
    )
    history = pretrain(model, rows[40:], rows[:40], LM_PARAMS, torch.device("cpu"), log=lambda line: None)
    return model, history


def next_word_log_probs(model, words):
    ids = torch.tensor([[VOCAB.index(w) for w in words]])
    with torch.no_grad():
        return model.decoder.log_prob(model.features(ids)[0, -1:])[0]


def test_language_model_loss_falls_and_it_learns_what_follows_each_sentiment_word(language_model):
    model, history = language_model
    losses = [row["val_loss"] for row in history]
    assert losses[-1] < losses[0] - 0.05, losses
    model.eval()
    loved, hated = VOCAB.index("loved"), VOCAB.index("hated")
    for label, markers in ((1, ("wonderful", "superb")), (0, ("awful", "dreadful"))):
        for marker in markers:
            log_probs = next_word_log_probs(model, ["the", "movie", marker, "was", "a", "film"])
            right, wrong = (loved, hated) if label else (hated, loved)
            assert log_probs[right] > log_probs[wrong] + 1.0, (marker, log_probs[right], log_probs[wrong])


LM_CONFIG = {"cell": "lstm", "embed_dim": 16, "hidden_dim": 16, "vocab_size": len(VOCAB)}


def save_lm(path, lm):
    """The pretrain_lm stage's file for `lm`, as the train stage reads it back."""
    save_pretrained(path, "lm", LM_CONFIG, lm.encoder_state(), vocab_sha256(VOCAB))
    return load_pretrained(path, "lm")


def test_classifier_from_the_language_model_generalises_to_words_only_the_lm_saw(language_model, tmp_path):
    """Labelled reviews carry wonderful/awful only; validation carries superb/dreadful only.

    From scratch, the classifier knows nothing of superb/dreadful. Initialised from the language
    model, which saw them in the same contexts as wonderful/awful, it scores them far above chance.
    """
    lm, _ = language_model
    payload = save_lm(tmp_path / "lm.pt", lm)
    train, val = labelled(SEEN, 200, seed=1), labelled(UNSEEN, 200, seed=2)
    accuracy = {}
    for kind in ("none", "lm"):
        model_config, train_config = configs(ARCH, len(VOCAB), COMMON)
        torch.manual_seed(0)
        model = initialise(model_config.build(), kind, payload, freeze_embeddings=False)
        _, history, _, _ = fit(model, train, val, train_config, torch.device("cpu"), name=kind)
        accuracy[kind] = max(row["val_accuracy"] for row in history)
    assert accuracy["lm"] >= 0.8, accuracy
    assert accuracy["lm"] >= accuracy["none"] + 0.2, accuracy


def test_lm_weights_land_in_the_classifier_by_name(language_model, tmp_path):
    lm, _ = language_model
    payload = save_lm(tmp_path / "lm.pt", lm)
    model = ModelConfig.from_dict({**ARCH, "bidirectional": True, "vocab_size": len(VOCAB)}).build()
    model = initialise(model, "lm", payload, freeze_embeddings=True)
    assert torch.equal(model.embedding.weight, lm.embedding.weight)
    assert torch.equal(model.layers[0][0].weight_hh_l0, lm.layers[0][0].weight_hh_l0)
    assert not model.embedding.weight.requires_grad  # frozen as asked
    assert not torch.equal(model.layers[0][1].weight_hh_l0, lm.layers[0][0].weight_hh_l0)  # backward stays random


def test_word2vec_vectors_become_the_embedding(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(len(VOCAB), 16)).astype(np.float32)
    save_pretrained(tmp_path / "w2v.pt", "word2vec", {"dim": 16}, torch.from_numpy(vectors), vocab_sha256(VOCAB))
    model = ModelConfig.from_dict({**ARCH, "vocab_size": len(VOCAB)}).build()
    model = initialise(model, "word2vec", load_pretrained(tmp_path / "w2v.pt", "word2vec"), freeze_embeddings=False)
    assert np.array_equal(model.embedding.weight.detach().numpy(), vectors)
    assert model.embedding.weight.requires_grad


@pytest.mark.parametrize(
    "kind, change, file, fragments",
    [
        ("word2vec", {}, "missing.pt", ["missing.pt is missing", "dvc repro pretrain_embeddings"]),
        ("word2vec", {"embed_dim": 8}, "w2v.pt", ["embed_dim 16 (pretrain_embeddings.dim) but tiny has 8"]),
        ("word2vec", {}, "garbage.pt", ["garbage.pt is corrupt or truncated"]),
        ("word2vec", {}, "lm.pt", ["not a word2vec file"]),
        ("lm", {"hidden_dim": 8}, "lm.pt", ["hidden_dim 16 (pretrain_lm.hidden_dim) but tiny has 8"]),
        ("lm", {"cell": "gru"}, "lm.pt", ["cell 'lstm' (pretrain_lm.cell) but tiny has 'gru'"]),
        ("lm", {}, "other_vocab.pt", ["made with another vocabulary"]),
    ],
)
def test_pretrained_weights_that_do_not_fit_are_one_line_errors_before_training(
    tmp_path, kind, change, file, fragments
):
    digest = vocab_sha256(VOCAB)
    save_pretrained(tmp_path / "w2v.pt", "word2vec", {"dim": 16}, torch.zeros(len(VOCAB), 16), digest)
    save_pretrained(tmp_path / "lm.pt", "lm", LM_CONFIG, {}, digest)
    save_pretrained(tmp_path / "other_vocab.pt", "lm", LM_CONFIG, {}, vocab_sha256(VOCAB[:-1]))
    (tmp_path / "garbage.pt").write_bytes(b"not torch")
    model_config = ModelConfig.from_dict({**ARCH, **change, "vocab_size": len(VOCAB)})
    with pytest.raises(PipelineError) as err:
        payload = load_pretrained(tmp_path / file, kind)
        check_pretrained(payload, kind, model_config, digest, "tiny", tmp_path / file)
    assert "\n" not in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_lm_refuses_the_test_reviews():
    with pytest.raises(PipelineError, match=r"pretrain_lm\.sources contains .test.: the test reviews must stay unseen"):
        check_settings({"sources": ["train", "test"], "cutoffs": [10]}, 100)


def test_the_language_model_takes_only_cells_it_can_stack_itself():
    from imdb_rnn.lm import SCHEMA
    from imdb_rnn.params import check
    from imdb_rnn.pipeline import PipelineError

    with pytest.raises(
        PipelineError, match=r"^parameter pretrain_lm.cell must be one of rnn, lstm, gru, .*got 'grid_lstm'$"
    ):
        check("pretrain_lm", {"cell": "grid_lstm"}, {"cell": SCHEMA["cell"]})
    assert "mdlstm" not in SCHEMA["cell"].choices and "peephole_lstm" in SCHEMA["cell"].choices


def test_the_language_model_is_the_batch_first_lstm_stack_it_was_dropout_masks_included():
    """Its layers run time-major, as every registered cell does; its losses and gradients, with dropout on, are
    still those of nn.LSTM(batch_first=True) layers, bit for bit, so its reruns reproduce earlier runs."""
    torch.manual_seed(0)
    model = LanguageModel(100, 16, 16, "lstm", 2, 0.3, [20, 50]).train()
    ids = torch.randint(1, 100, (8, 33))
    batch_first = [nn.LSTM(16, 16, batch_first=True) for _ in model.layers]
    for lstm, (layer,) in zip(batch_first, model.layers):
        lstm.load_state_dict(layer.state_dict())

    def as_it_was():
        x = model.dropout(model.embedding(ids[:, :-1]))
        for lstm in batch_first:
            x = model.dropout(lstm(x)[0])
        return model.decoder(x.reshape(-1, x.size(-1)), ids[:, 1:].reshape(-1)).loss

    torch.manual_seed(5)
    ours = model(ids)
    ours.backward()
    torch.manual_seed(5)
    theirs = as_it_was()
    theirs.backward()
    assert torch.equal(ours, theirs)
    for lstm, (layer,) in zip(batch_first, model.layers):
        assert all(torch.equal(a.grad, b.grad) for a, b in zip(lstm.parameters(), layer.parameters()))
