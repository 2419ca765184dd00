"""Training loop, device choice and self-contained checkpoints."""

import copy
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .artifacts import PipelineError, atomic_path
from .batches import bucketed, by_length
from .model import CELLS, POOLINGS, RecurrentClassifier
from .params import Param, stage_of

CHECKPOINT_FORMAT = 1
PRETRAINED = ("none", "word2vec", "lm")

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
    # initial weights: none (random), word2vec (pretrain_embeddings stage) or lm (pretrain_lm stage)
    "pretrained": Param(str, choices=PRETRAINED),
    "freeze_embeddings": Param(bool),  # keep the embedding fixed during training
    # adversarial training: size of the embedding perturbation, relative to each review's embedding norm (0 = off)
    "adversarial": Param((int, float), min=0, max=1.0),
}
MODEL_KEYS = ("cell", "bidirectional", "num_layers", "pooling", "embed_dim", "hidden_dim", "attention_dim", "dropout", "embed_dropout")

# settings shared by every architecture
TRAIN_SCHEMA = {
    "seed": Param(int, min=0),
    "device": Param(str, choices=("auto", "cpu", "cuda")),
    "threads": Param(int, min=0, max=256),  # 0 = every core
    "eval_batch_size": Param(int, min=1, max=65536),
    "bucket_pool": Param(int, min=1, max=100_000),  # batches per length-sorting pool
    "processes": Param(int, min=1, max=1024),  # data-parallel processes (distributed.launch)
}


def pick_device(name, local_rank=0):
    """The device to train on; under torchrun each process on a GPU machine takes its own GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("train.device is cuda but no CUDA device is visible: set train.device to auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


def configure_cpu(threads):
    """`threads` per process, or 0: the cores shared out between the processes on this machine.

    Also flushes denormal floats to zero: gradients fading through hundreds of recurrent steps
    become denormal, and CPU arithmetic on denormals is many times slower (bench_train.py).
    """
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // processes))
    torch.set_flush_denormal(True)


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


def initialise(model, arch, name, word2vec=None, lm=None):
    """Load the pretrained weights arch['pretrained'] names into a fresh model, then freeze as asked.

    word2vec: an array [vocabulary, embed_dim] (pretrain_embeddings stage) becomes the embedding.
    lm: the embedding and the forward recurrent layers of a language model (pretrain_lm stage),
    whose parameter names match this model's; a bidirectional model's backward layers and any
    layer the LM lacks stay random.
    """
    kind = arch["pretrained"]
    if kind != "none" and {"word2vec": word2vec, "lm": lm}[kind] is None:
        raise PipelineError(
            f"{name}.pretrained is {kind} but the stage got no --{kind} file: list {name} under "
            f"pretrained_architectures in params.yaml (its stage depends on the pretraining output)"
        )
    if kind == "word2vec":
        vectors = _load_pretrained(word2vec, "word vectors", np.load)
        wanted = tuple(model.embedding.weight.shape)
        if vectors.shape != wanted:
            raise PipelineError(
                f"{word2vec} holds vectors of shape {vectors.shape} but {name} needs {wanted} (vocabulary x embed_dim): "
                f"set {name}.embed_dim to pretrain_embeddings.dim, then dvc repro"
            )
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(vectors))
    elif kind == "lm":
        payload = _load_pretrained(lm, "language model", lambda p: torch.load(p, map_location="cpu", weights_only=True))
        config, encoder = payload.get("config", {}), payload.get("encoder", {})
        ours = {"cell": arch["cell"], "embed_dim": arch["embed_dim"], "hidden_dim": arch["hidden_dim"],
                "vocab_size": model.embedding.num_embeddings}
        for key, value in ours.items():
            if config.get(key) != value:
                raise PipelineError(
                    f"the language model {lm} has {key} {config.get(key)!r} but {name} has {value!r}: "
                    f"make {name}.{key} and pretrain_lm.{key} agree, then dvc repro"
                )
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in encoder.items() if k in own and own[k].shape == v.shape}, strict=False)
    if arch["freeze_embeddings"]:
        model.embedding.weight.requires_grad_(False)
    return model


def _load_pretrained(path, what, loader):
    if not Path(path).exists():
        raise PipelineError(f"{what} {path} is missing: run the stage that makes it (dvc repro)")
    try:
        return loader(path)
    except Exception as err:  # truncated or foreign files fail in many ways
        raise PipelineError(f"{what} {path} is unreadable ({type(err).__name__}): rerun the stage that makes it")


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


def accuracy(logits, labels):
    """The share of reviews on the right side: positive when the logit is above 0."""
    return float(np.mean((np.asarray(logits) > 0) == (np.asarray(labels) > 0.5)))


def loss_and_accuracy(logits, labels):
    loss = nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    return loss, accuracy(logits, labels)


def make_optimizer(model, lr, weight_decay=0.0):
    """Adam over the trainable parameters (already on their device), as one fused kernel where
    PyTorch has one: the update of a 25,000-word embedding is a large share of a small model's step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") for p in trainable)
    return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay, fused=fused)


def update(model, optimizer, loss, grad_clip, error, more=None):
    """One optimisation step; a non-finite loss stops training with `error` (its {loss} filled in).

    `more`, when given, is called after loss.backward() to add further gradients before the step
    (the adversarial loss, which needs the clean loss's gradient first).
    """
    if not torch.isfinite(loss):
        raise PipelineError(error.format(loss=loss.item()))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if more:
        more()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


class EmbeddingAttack:
    """Adversarial training on the word embeddings (Goodfellow et al., 2015; Miyato et al., 2017).

    A forward hook on the embedding keeps the gradient of its output ([T, B, E], time-major) in the
    clean pass. `backward` then runs the model again with each review's embedded tokens moved by
    the perturbation that raises the loss most to first order (the gradient, normalised per
    review) and adds the gradient of that loss. Its norm is `epsilon` times the review's own
    embedding norm, so that growing the embedding weights cannot make the attack vanish.
    """

    def __init__(self, embedding, epsilon):
        self.epsilon, self.embedded, self.delta = epsilon, None, None
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is not None:
            return output + self.delta
        if module.training:
            if not output.requires_grad:  # a frozen embedding: the attack still needs this gradient
                output = output.detach().requires_grad_()
            output.retain_grad()
            self.embedded = output
            return output
        return None

    def backward(self, adversarial_loss):
        """Add the gradient of adversarial_loss() (a closure running the model) under the attack."""
        grad, embedded = self.embedded.grad, self.embedded.detach()
        per_review = (0, 2)
        scale = self.epsilon * embedded.norm(dim=per_review, keepdim=True) / grad.norm(dim=per_review, keepdim=True).clamp_min(1e-12)
        self.delta, self.embedded = (grad * scale).detach(), None
        try:
            adversarial_loss().backward()
        finally:
            self.delta = None

    def remove(self):
        self.handle.remove()


def fit(model, train, valid, arch, common, device, log=None, name="model", resume=None, context=None):
    """Train with early stopping on validation loss; return (best state dict, history, summary, timing).

    `resume` (a Resume) saves the whole training state after every epoch and, when a matching
    unfinished state is there at the start, continues after its last finished epoch with the same
    batches, dropout masks and weights as a run that was never interrupted. `context` (from
    distributed.setup) splits each epoch's batches over the torchrun processes.
    """
    context = context or distributed.Context()
    rng = np.random.default_rng(common["seed"])
    model.to(device)
    optimizer = make_optimizer(model, arch["lr"], arch["weight_decay"])
    trained = distributed.wrap(model, context, device)
    loss_fn = nn.BCEWithLogitsLoss()
    attack = EmbeddingAttack(model.embedding, arch["adversarial"]) if arch["adversarial"] else None
    best = {"val_loss": math.inf}
    best_state, history, stale = None, [], 0
    train_seconds, train_tokens = 0.0, 0
    saved = resume.load(context) if resume else None
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["batch_rng"]
        torch.set_rng_state(saved["torch_rng"][context.rank])
        best, best_state, history, stale = saved["best"], saved["best_state"], saved["history"], saved["stale"]
        train_seconds, train_tokens = saved["train_seconds"], saved["train_tokens"]
        print(f"{name}: resuming after epoch {len(history)} from {resume.path}", flush=True)
        for row in history:
            if log:
                log(row)
    for epoch in range(len(history) + 1, arch["epochs"] + 1):
        model.train()
        batches = bucketed(train.lengths, arch["batch_size"], rng, common["bucket_pool"])
        epoch_tokens = sum(train.tokens(rows) for rows in distributed.used(batches, context))
        start = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(distributed.shard(batches, context), desc=f"{name} epoch {epoch}/{arch['epochs']}", unit="batch",
                   leave=False, disable=None if context.main else True, file=sys.stderr)
        for step, rows in enumerate(bar, 1):
            ids, lengths, labels = train.batch(rows, device)
            logits = trained(ids, lengths)
            loss = loss_fn(logits, labels)
            more = (lambda: attack.backward(lambda: loss_fn(trained(ids, lengths), labels))) if attack else None
            update(model, optimizer, loss, arch["grad_clip"], f"{name}: loss became {{loss}} at epoch {epoch}, batch {step}: "
                   f"lower {name}.lr or set {name}.grad_clip; no checkpoint was written", more)
            total_loss += loss.item() * len(rows)
            correct += int(((logits.detach() > 0) == (labels > 0.5)).sum())
            seen += len(rows)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        total_loss, correct, seen = distributed.sum_over_ranks([total_loss, correct, seen], context)
        epoch_seconds = time.perf_counter() - start
        train_seconds += epoch_seconds
        train_tokens += epoch_tokens
        # every rank holds the same weights, so every rank scores the same validation set alike
        val_loss, val_acc = loss_and_accuracy(predict_logits(model, valid, common["eval_batch_size"], device), valid.labels)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": epoch_seconds,
            "tokens_per_second": epoch_tokens / epoch_seconds,
        }
        history.append(row)
        if log:
            log(row)
        if context.main:
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
        stop = stale >= arch["patience"]
        if resume:
            resume.save(context, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "batch_rng": rng.bit_generator.state,
                "torch_rng": distributed.gather(torch.get_rng_state(), context),
                "best": best, "best_state": best_state, "history": history, "stale": stale,
                "train_seconds": train_seconds, "train_tokens": train_tokens,
                "finished": stop or epoch == arch["epochs"],
            })
        if stop:
            if context.main:
                print(f"{name}: no better validation loss for {stale} epochs, stopping early", flush=True)
            break
    if attack:
        attack.remove()
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
        "processes": context.world,
    }
    return best_state, history, summary, timing


class Resume:
    """The training state after the last finished epoch, in one file (a DVC `persist` output).

    A state is only taken up when its fingerprint (parameters, data, initial weights, process
    count) matches this run's and the run it came from had not finished; otherwise training
    starts from scratch. Written atomically by rank 0, so a kill leaves the previous epoch's state.
    """

    def __init__(self, path, fingerprint):
        self.path, self.fingerprint = Path(path), fingerprint

    def load(self, context):
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a state we cannot read is a state we do not resume from
            print(f"{self.path} is unreadable: training from scratch", flush=True)
            return None
        if saved.get("fingerprint") != self.fingerprint or saved.get("finished"):
            return None
        if len(saved["torch_rng"]) != context.world:
            return None
        return saved

    def save(self, context, state):
        if context.main:
            with atomic_path(self.path) as tmp:
                torch.save({"fingerprint": self.fingerprint, **state}, tmp)


def fingerprint(*parts):
    """A digest of everything that decides a training run: settings (JSON-able) and arrays."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, torch.Tensor):
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


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


def retrain_hint(path, arch=None):
    """`dvc repro -f <the stage that trains it>` for checkpoint `path` (data/models/<arch>.pt)."""
    return f"dvc repro -f {stage_of('train', arch or Path(path).stem)}"


def load_checkpoint(path, device="cpu"):
    """Load a checkpoint and rebuild its model; every problem is a one-line PipelineError."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"checkpoint {path} is missing: train it first ({retrain_hint(path).replace(' -f', '')})")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated zip, pickle errors, wrong file type...
        raise PipelineError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}): retrain it ({retrain_hint(path)})")
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
