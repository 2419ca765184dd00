"""A tiny model trained in seconds on synthetic reviews, with the library's own pipeline functions."""

import random

import numpy as np
import torch
from synthetic import review

from imdb_rnn.batches import Reviews, align_left
from imdb_rnn.checkpoint import save_checkpoint
from imdb_rnn.config import ModelConfig, TrainConfig
from imdb_rnn.text import build_vocab, clean_texts, count_words, split_words, tokenize, vocab_sha256
from imdb_rnn.train import fit

CLEAN = {"normalize": True, "lowercase": True, "strip_html_breaks": True, "punctuation": "remove"}
TOKENIZE = {"seq_len": 48, "pad_side": "left", "truncate_side": "right"}
COMMON = {"seed": 0, "device": "cpu", "threads": 0, "eval_batch_size": 64, "bucket_pool": 4, "processes": 1}


def arch_params(pooling="max", cell="lstm", bidirectional=True, epochs=3):
    return {
        "cell": cell,
        "bidirectional": bidirectional,
        "num_layers": 1,
        "pooling": pooling,
        "attention_dim": 8,
        "embed_dim": 16,
        "hidden_dim": 16,
        "dropout": 0.0,
        "embed_dropout": 0.0,
        "lr": 0.02,
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "batch_size": 16,
        "epochs": epochs,
        "patience": epochs,
        "seq_len": TOKENIZE["seq_len"],
        "freeze_embeddings": False,
        "adversarial_eps": 0.0,
    }


def configs(settings, vocab_size, common=COMMON):
    """(ModelConfig, TrainConfig) from an architecture's settings dict and the shared train settings."""
    return ModelConfig.from_dict({**settings, "vocab_size": vocab_size}), TrainConfig.from_dict({**settings, **common})


def synthetic_reviews(n, seed):
    """n raw reviews (marker words decide the label) and their labels, 1 = positive."""
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    return [review(rng, "pos" if y else "neg", max_words=30) for y in labels], np.array(labels, np.int8)


def encode(texts, labels, vocab):
    ids, kept, _ = tokenize(texts, vocab, CLEAN, TOKENIZE)
    return Reviews(align_left(ids, kept, TOKENIZE["pad_side"]), kept, labels)


def train_tiny(path, arch_name="tiny", **arch_kwargs):
    """Train on synthetic reviews and save a real checkpoint at `path`; return its vocabulary."""
    torch.set_num_threads(1)  # tiny matrices: more threads only add synchronisation
    torch.manual_seed(0)
    texts, labels = synthetic_reviews(240, seed=1)
    words, _ = split_words(clean_texts(texts, CLEAN))
    vocab = build_vocab(count_words(words), max_size=200, min_freq=1)
    train, val = encode(texts[:200], labels[:200], vocab), encode(texts[200:], labels[200:], vocab)
    model_config, train_config = configs(arch_params(**arch_kwargs), len(vocab))
    state, _, summary, timing = fit(model_config.build(), train, val, train_config, torch.device("cpu"), name=arch_name)
    save_checkpoint(
        path,
        arch_name=arch_name,
        config=model_config,
        state_dict=state,
        vocab=vocab,
        clean=CLEAN,
        tokenize=TOKENIZE,
        vocab_sha256=vocab_sha256(vocab),
        metrics={**summary, **timing},
    )
    return vocab
