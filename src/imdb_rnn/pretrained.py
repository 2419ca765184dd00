"""The pretraining stages' outputs (word2vec vectors, a language model's encoder), saved and loaded as a pair.

Each file holds the weights with the settings a classifier must share with them and the hash of
the vocabulary they were learnt for, so that a mismatch is found before any training.
"""

import numpy as np
import torch

from .pipeline import PipelineError, atomic_path, load

PRETRAINED_FORMAT = 1


def save_pretrained(path, kind, config, weights, vocab_sha256, **extra):
    """A pretraining stage's output: `weights` (word2vec: the vectors [vocabulary, dim]; lm: the encoder's
    state dict) with the settings a classifier must share with them (`config`) and the vocabulary's hash."""
    payload = {
        "format": PRETRAINED_FORMAT,
        "kind": kind,
        "config": config,
        "weights": weights,
        "vocab_sha256": vocab_sha256,
        **extra,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object: torch names the archive inside by a path, and tmp's is random


def load_pretrained(path, kind):
    """The payload save_pretrained wrote; a one-line PipelineError when missing, damaged or of another kind."""
    what = {"word2vec": "word vectors", "lm": "language model"}[kind]
    payload = load(
        path,
        what,
        lambda p: torch.load(p, map_location="cpu", weights_only=True),
        make="run the pretrain stage that makes it "
        f"(dvc repro {'pretrain_embeddings' if kind == 'word2vec' else 'pretrain_lm'})",
    )
    if not isinstance(payload, dict) or payload.get("kind") != kind or payload.get("format") != PRETRAINED_FORMAT:
        raise PipelineError(f"{what} {path} is not a {kind} file of this version: rerun the stage that makes it")
    return payload


# what a pretrained architecture shares with its pretraining stage: {kind: (params.yaml section,
# {architecture key: that section's key})}; check_params checks the parameters, check_pretrained the file
SHARED = {
    "word2vec": ("pretrain_embeddings", {"embed_dim": "dim"}),
    "lm": ("pretrain_lm", {"cell": "cell", "embed_dim": "embed_dim", "hidden_dim": "hidden_dim"}),
}


def check_pretrained(payload, kind, model_config, vocab_sha256, name, path):
    """Before any training: the pretraining output must fit architecture `name` (its ModelConfig) and vocabulary."""
    if payload["vocab_sha256"] != vocab_sha256:
        raise PipelineError(f"{path} was made with another vocabulary: rerun dvc repro")
    section, keys = SHARED[kind]
    wanted = {ours: (payload["config"][theirs], f"{section}.{theirs}") for ours, theirs in keys.items()}
    for key, (theirs, source) in wanted.items():
        ours = getattr(model_config, key)
        if ours != theirs:
            raise PipelineError(
                f"{path} has {key} {theirs!r} ({source}) but {name} has {ours!r}: make {name}.{key} "
                f"and {source} agree, then dvc repro"
            )


def initialise(model, kind, payload, freeze_embeddings):
    """Load the pretrained weights into a fresh classifier, then freeze its embedding if asked.

    word2vec: the vectors become the embedding. lm: the embedding and the forward recurrent layers
    of the language model, whose parameter names match the classifier's; a bidirectional model's
    backward layers and any layer the LM lacks stay random.
    """
    if kind == "word2vec":
        with torch.no_grad():
            model.embedding.weight.copy_(torch.as_tensor(np.asarray(payload["weights"])))
    elif kind == "lm":
        own = model.state_dict()
        weights = {k: v for k, v in payload["weights"].items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(weights, strict=False)
    if freeze_embeddings:
        model.embedding.weight.requires_grad_(False)
    return model
