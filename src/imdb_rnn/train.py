"""Training loop, device choice and self-contained checkpoints."""

import copy
import math
import os
import random
import sys
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .artifacts import PipelineError, atomic_path
from .batches import bucketed, by_length
from .model import CELLS, POOLINGS, RecurrentClassifier
from .params import Param

CHECKPOINT_FORMAT = 1

# one section per architecture in params.yaml
ARCH_SCHEMA = {
    "cell": Param(str, choices=tuple(CELLS)),
    "bidirectional": Param(bool),
    "num_layers": Param(int, min=1, max=8),
    "pooling": Param(str, choices=POOLINGS),
    "embed_dim": Param(int, min=1, max=4096),
    "hidden_dim": Param(int, min=1, max=8192),
    "attention_dim": Param(int, min=1, max=4096, required=False),
    "dropout": Param((int, float), min=0, max=0.95),
    "embed_dropout": Param((int, float), min=0, max=0.95),
    "lr": Param(float, min=1e-7, max=1.0),
    "weight_decay": Param((int, float), min=0, max=1.0),
    "grad_clip": Param((int, float), min=0),  # 0 = no clipping
    "batch_size": Param(int, min=1, max=65536),
    "epochs": Param(int, min=1, max=1000),
    "patience": Param(int, min=1, max=1000),  # epochs without a better validation loss before stopping
    "max_len": Param(int, min=1, max=100_000),  # tokens read per review (at most tokenize.seq_len)
}
MODEL_KEYS = ("cell", "bidirectional", "num_layers", "pooling", "embed_dim", "hidden_dim", "attention_dim", "dropout", "embed_dropout")

# settings shared by every architecture
TRAIN_SCHEMA = {
    "seed": Param(int, min=0),
    "device": Param(str, choices=("auto", "cpu", "cuda")),
    "threads": Param(int, min=0, max=256),  # 0 = every core
    "eval_batch_size": Param(int, min=1, max=65536),
    "bucket_pool": Param(int, min=1, max=100_000),  # batches per length-sorting pool
}


def pick_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is cuda but no CUDA device is visible: set train.device to auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def set_threads(threads):
    torch.set_num_threads(threads or os.cpu_count() or 1)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def model_config(arch_params, vocab_size):
    config = {k: arch_params[k] for k in MODEL_KEYS if k in arch_params}
    config["vocab_size"] = vocab_size
    return config


def build_model(config):
    return RecurrentClassifier(**config)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def predict_logits(model, reviews, batch_size, device, idx=None):
    """Logits for every review (or rows idx), in their original order."""
    model.eval()
    idx = np.arange(len(reviews)) if idx is None else np.asarray(idx)
    out = np.zeros(len(idx), np.float32)
    for rows in by_length(reviews.lengths[idx], batch_size):
        ids, lengths, _ = reviews.batch(idx[rows], device)
        out[rows] = model(ids, lengths).float().cpu().numpy()
    return out


def loss_and_accuracy(logits, labels):
    logits_t = torch.from_numpy(logits)
    loss = nn.functional.binary_cross_entropy_with_logits(logits_t, torch.from_numpy(labels)).item()
    accuracy = float(((logits > 0) == (labels > 0.5)).mean())
    return loss, accuracy


def fit(model, train, valid, arch, common, device, log=None, name="model"):
    """Train with early stopping on validation loss; return (best state dict, history, summary)."""
    rng = np.random.default_rng(common["seed"])
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=arch["lr"], weight_decay=arch["weight_decay"])
    loss_fn = nn.BCEWithLogitsLoss()
    best = {"val_loss": math.inf}
    best_state, history, stale = None, [], 0
    train_seconds, train_tokens = 0.0, 0
    for epoch in range(1, arch["epochs"] + 1):
        model.train()
        batches = bucketed(train.lengths, arch["batch_size"], rng, common["bucket_pool"])
        start = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(batches, desc=f"{name} epoch {epoch}/{arch['epochs']}", unit="batch", leave=False, disable=None, file=sys.stderr)
        for step, rows in enumerate(bar, 1):
            ids, lengths, labels = train.batch(rows, device)
            logits = model(ids, lengths)
            loss = loss_fn(logits, labels)
            if not torch.isfinite(loss):
                raise PipelineError(
                    f"{name}: loss became {loss.item()} at epoch {epoch}, batch {step}: lower {name}.lr or set "
                    f"{name}.grad_clip; no checkpoint was written"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if arch["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), arch["grad_clip"])
            optimizer.step()
            total_loss += loss.item() * len(rows)
            correct += int(((logits.detach() > 0) == (labels > 0.5)).sum())
            seen += len(rows)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        epoch_seconds = time.perf_counter() - start
        train_seconds += epoch_seconds
        train_tokens += train.tokens()
        val_loss, val_acc = loss_and_accuracy(predict_logits(model, valid, common["eval_batch_size"], device), valid.labels)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": epoch_seconds,
            "tokens_per_second": train.tokens() / epoch_seconds,
        }
        history.append(row)
        if log:
            log(row)
        print(
            f"{name} epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
            f"val loss {val_loss:.4f} acc {val_acc:.4f} | {epoch_seconds:.0f}s, {row['tokens_per_second']:.0f} tokens/s",
            flush=True,
        )
        if val_loss < best["val_loss"]:
            best, stale = row, 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale += 1
            if stale >= arch["patience"]:
                print(f"{name}: no better validation loss for {stale} epochs, stopping early", flush=True)
                break
    summary = {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "val_loss": round(best["val_loss"], 6),
        "val_accuracy": round(best["val_accuracy"], 6),
        "train_loss": round(best["train_loss"], 6),
        "train_accuracy": round(best["train_accuracy"], 6),
        "parameters": count_parameters(model),
    }
    timing = {
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / len(history), 1),
        "tokens_per_second": round(train_tokens / train_seconds, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
    return best_state, history, summary, timing


def save_checkpoint(path, *, arch_name, config, state_dict, vocab, clean, tokenize, vocab_sha256, metrics):
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch_name,
        "model_config": config,
        "state_dict": state_dict,
        "vocab": vocab,
        "clean": clean,
        "tokenize": tokenize,
        "vocab_sha256": vocab_sha256,
        "metrics": metrics,
        "torch_version": str(torch.__version__),  # a plain str: weights_only loading refuses TorchVersion
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint and rebuild its model; every problem is a one-line PipelineError."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"checkpoint {path} is missing: train it first (dvc repro train)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, wrong file type...
        raise PipelineError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}): retrain it (dvc repro -f train)")
    if not isinstance(payload, dict) or "format" not in payload:
        raise PipelineError(f"{path} is not an imdb-rnn checkpoint: point at a data/models/<arch>.pt file")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise PipelineError(
            f"checkpoint {path} has format {payload['format']}, this version reads format {CHECKPOINT_FORMAT}: retrain it"
        )
    try:
        model = build_model(payload["model_config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise PipelineError(f"checkpoint {path} does not match its model settings ({str(err).splitlines()[0]}): retrain it")
    model.to(device).eval()
    return model, payload
