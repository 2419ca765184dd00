"""A classifier's self-contained checkpoint: saved and loaded here as a pair.

It carries everything needed to use the model on new text: the ModelConfig, the weights, the
vocabulary, the cleaning and padding settings, and the training metrics.
"""

import re
from dataclasses import fields
from pathlib import Path

import torch

from .cells import CELLS
from .config import ARCH_SCHEMA, ModelConfig
from .model import parameter_count
from .params import Param, check, retrain_hint
from .pipeline import PipelineError, atomic_path, load

# a checkpoint's model_config is checked as params.yaml's architecture sections are, before anything is built
MODEL_SCHEMA = {
    **{f.name: ARCH_SCHEMA[f.name] for f in fields(ModelConfig) if f.name in ARCH_SCHEMA},
    "vocab_size": Param(int, min=3, max=10_000_000),
    "options": Param(dict, required=False),
}
SERVED = re.compile(r"seed(\d+)")  # dvc.yaml's layout: data/models/<arch>/seed<seed>.pt

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


def check_served_path(path, payload):
    """Raise PipelineError when a checkpoint at dvc.yaml's place for an architecture and seed
    (.../models/<arch>/seed<seed>.pt) records another: a file swapped in a DVC remote, or copied by hand."""
    served = SERVED.fullmatch(Path(path).stem)
    if not served or Path(path).parent.parent.name != "models":  # a copy elsewhere (dvc get, ~/seed42.pt) names nothing
        return
    arch, seed = Path(path).parent.name, int(served[1])
    recorded = (payload.get("arch"), (payload.get("metrics") or {}).get("seed", seed))
    if recorded != (arch, seed):
        raise PipelineError(
            f"checkpoint {path} holds {recorded[0]} seed {recorded[1]}, not the {arch} seed {seed} its path "
            f"names: a swapped or mislabelled file; fetch it again (dvc pull, with `dvc remote modify NAME "
            f"verify true`) or retrain it ({retrain_hint(path)})"
        )


def load_checkpoint(path, device="cpu"):
    """(model in eval mode on `device`, payload dict) of a checkpoint; every problem is a one-line PipelineError.

    The model_config is checked against params.yaml's schema, and the size of the weights against the
    parameters it asks for (model.parameter_count), before the model is built: a small file cannot ask
    for a huge model. A file at data/models/<arch>/seed<seed>.pt must record that architecture and seed
    (check_served_path)."""
    path = Path(path)
    payload = load(
        path,
        "checkpoint",
        lambda p: torch.load(p, map_location=device, weights_only=True),
        make=f"train it first ({retrain_hint(path).replace(' -f', '')})",
        remake=f"retrain it ({retrain_hint(path)})",
    )
    if not isinstance(payload, dict) or "format" not in payload:
        raise PipelineError(f"{path} is not an imdb-rnn checkpoint: point at a data/models/<arch>/seed<seed>.pt file")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise PipelineError(
            f"checkpoint {path} has format {payload['format']}, this version reads format {CHECKPOINT_FORMAT}: "
            "retrain it"
        )
    check_served_path(path, payload)
    try:
        config = ModelConfig.from_dict(check("checkpoint model_config", payload.get("model_config"), MODEL_SCHEMA))
        check("checkpoint model_config.options", config.options or {}, CELLS[config.cell].options)
        state = payload["state_dict"]
        found = sum(t.numel() for t in state.values()) if isinstance(state, dict) else 0
        expected = parameter_count(**config.as_dict())
        if found != expected:  # before building: a small file must not ask for a huge model
            raise ValueError(f"its weights hold {found:,} parameters, its model_config asks for {expected:,}")
        model = config.build()
        model.load_state_dict(state)
    except (PipelineError, KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise PipelineError(
            f"checkpoint {path} does not match its model settings ({str(err).splitlines()[0]}): retrain it"
        )
    model.to(device).eval()
    return model, payload
