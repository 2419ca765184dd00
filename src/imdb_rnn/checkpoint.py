"""A classifier's self-contained checkpoint: saved and loaded here as a pair.

It carries everything needed to use the model on new text: the ModelConfig, the weights, the
vocabulary, the cleaning and padding settings, and the training metrics.
"""

from pathlib import Path

import torch

from .artifacts import PipelineError, atomic_path, load
from .config import ModelConfig
from .params import retrain_hint

CHECKPOINT_FORMAT = 1


def save_checkpoint(path, *, arch_name, config, state_dict, vocab, clean, tokenize, vocab_sha256, metrics):
    """Write a classifier checkpoint atomically; `config` is a ModelConfig (stored as a dict)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch_name,
        "model_config": config.as_dict(),
        "state_dict": state_dict,
        "vocab": vocab,
        "clean": clean,
        "tokenize": tokenize,
        "vocab_sha256": vocab_sha256,
        "metrics": metrics,
        "torch_version": str(torch.__version__),  # a plain str: weights_only loading refuses TorchVersion
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object: torch names the archive inside by a path, and tmp's is random


def load_checkpoint(path, device="cpu"):
    """(model in eval mode on `device`, payload dict) of a checkpoint; every problem is a one-line PipelineError."""
    path = Path(path)
    payload = load(path, "checkpoint", lambda p: torch.load(p, map_location=device, weights_only=True),
                   make=f"train it first ({retrain_hint(path).replace(' -f', '')})", remake=f"retrain it ({retrain_hint(path)})")
    if not isinstance(payload, dict) or "format" not in payload:
        raise PipelineError(f"{path} is not an imdb-rnn checkpoint: point at a data/models/<arch>/seed<seed>.pt file")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise PipelineError(
            f"checkpoint {path} has format {payload['format']}, this version reads format {CHECKPOINT_FORMAT}: retrain it"
        )
    try:
        model = ModelConfig.from_dict(payload["model_config"]).build()
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise PipelineError(f"checkpoint {path} does not match its model settings ({str(err).splitlines()[0]}): retrain it")
    model.to(device).eval()
    return model, payload
