"""A recurrent language model on unlabelled text, whose encoder initialises a classifier.

The encoder's parameter names match RecurrentClassifier's (`embedding.*`, `layers.<k>.0.*`, one
single-layer cell per layer), so a classifier takes the embedding and forward layers as they are
(see train.initialise). The output layer is PyTorch's adaptive softmax: a full softmax over a
25,000-word vocabulary would cost more than the recurrent layers on a CPU.
"""

import math
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn
from tqdm import tqdm

from .cells import CELLS, check_cell
from .embeddings import check_sources
from .ingest import read_table
from .optim import make_optimizer, optimizer_step
from .params import Param, load_section
from .pipeline import PipelineError, write_json
from .pretrained import save_pretrained
from .runtime import configure_cpu, pick_device, seed_everything
from .text import encode, read_vocab, split_words, vocab_sha256

SCHEMA = {
    # a cell the language model stacks itself: one without options of its own, not a whole stack
    "cell": Param(str, choices=tuple(name for name, cell in CELLS.items() if not cell.stack and not cell.options)),
    "num_layers": Param(int, min=1, max=8),
    "embed_dim": Param(int, min=1, max=4096),
    "hidden_dim": Param(int, min=1, max=8192),
    "dropout": Param((int, float), min=0, max=0.95),
    "cutoffs": Param(list),  # adaptive softmax cluster boundaries (word ids, ascending)
    "bptt": Param(int, min=2, max=10_000),  # tokens per training sequence
    "batch_size": Param(int, min=1, max=65536),
    "lr": Param(float, min=1e-7, max=1.0),
    "grad_clip": Param((int, float), min=0),
    "epochs": Param(int, min=1, max=1000),
    "max_tokens": Param(int, min=0),  # tokens per epoch, 0 = the whole corpus
    "val_fraction": Param(float, min=0.001, max=0.5),
    "sources": Param(list),  # ingest splits to learn from: train and/or unsup, never test
    "seed": Param(int, min=0),
    "device": Param(str, choices=("auto", "cpu", "cuda")),
    "threads": Param(int, min=0, max=256),
}


def check_settings(params, vocab_size):
    check_sources(params["sources"], "pretrain_lm.sources")
    cutoffs = params["cutoffs"]
    if not all(isinstance(c, int) for c in cutoffs) or cutoffs != sorted(set(cutoffs)) or (cutoffs and cutoffs[0] < 1):
        raise PipelineError(f"parameter pretrain_lm.cutoffs must be ascending positive word ids, got {cutoffs}")
    # cutoffs beyond the vocabulary are dropped: a small vocabulary simply gets fewer clusters
    # (at least one: that is what an adaptive softmax needs)
    return [c for c in cutoffs if c < vocab_size - 1] or [max(1, vocab_size // 2)]


class LanguageModel(nn.Module):
    """Embedding -> unidirectional recurrent layers -> adaptive softmax over the next word."""

    def __init__(self, vocab_size, embed_dim, hidden_dim, cell="lstm", num_layers=1, dropout=0.0, cutoffs=()):
        super().__init__()
        layer = check_cell(cell).layer  # the registry's cells run time-major
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.layers = nn.ModuleList(
            nn.ModuleList([layer(embed_dim if k == 0 else hidden_dim, hidden_dim)]) for k in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.AdaptiveLogSoftmaxWithLoss(hidden_dim, vocab_size, cutoffs=list(cutoffs), div_value=4.0)

    def features(self, ids):
        """ids [B, T] -> the top layer's outputs [B, T, hidden_dim], each from the words up to its own."""
        # batch-major between the layers, so that dropout draws its masks as it always did; each layer runs
        # time-major, as the registry's cells do
        x = self.dropout(self.embedding(ids))
        for (rnn,) in self.layers:
            x = self.dropout(rnn(x.transpose(0, 1))[0].transpose(0, 1))
        return x

    def forward(self, ids):
        """Mean negative log-likelihood of ids[:, 1:] given the words before them."""
        x = self.features(ids[:, :-1])
        return self.decoder(x.reshape(-1, x.size(-1)), ids[:, 1:].reshape(-1)).loss

    def encoder_state(self):
        """The weights a classifier takes over: embedding and recurrent layers."""
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if not k.startswith("decoder.")}


def sequences(stream, bptt):
    """Cut a token stream into rows of bptt + 1 tokens (inputs and their next words)."""
    rows = (len(stream) - 1) // bptt
    if rows == 0:
        raise PipelineError(f"only {len(stream)} tokens to learn from, fewer than pretrain_lm.bptt={bptt}: lower it")
    starts = np.arange(rows) * bptt
    return stream[starts[:, None] + np.arange(bptt + 1)[None, :]]


@torch.no_grad()
def mean_loss(model, rows, batch_size, device):
    model.eval()
    total = 0.0
    for i in range(0, len(rows), batch_size):
        batch = torch.from_numpy(rows[i : i + batch_size].astype(np.int64)).to(device)
        total += model(batch).item() * len(batch)
    return total / len(rows)


def pretrain(model, train_rows, val_rows, params, device, log=print):
    """Train the language model; return the per-epoch history."""
    rng = np.random.default_rng(params["seed"])
    model.to(device)
    optimizer = make_optimizer(model, params["lr"])
    per_epoch = (
        len(train_rows)
        if not params["max_tokens"]
        else min(len(train_rows), max(1, params["max_tokens"] // params["bptt"]))
    )
    history = []
    for epoch in range(1, params["epochs"] + 1):
        model.train()
        order = rng.permutation(len(train_rows))[:per_epoch]
        batches = [order[i : i + params["batch_size"]] for i in range(0, len(order), params["batch_size"])]
        start, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(
            batches,
            desc=f"language model epoch {epoch}/{params['epochs']}",
            unit="batch",
            leave=False,
            disable=None,
            file=sys.stderr,
        )
        for step, idx in enumerate(bar, 1):
            batch = torch.from_numpy(train_rows[idx].astype(np.int64)).to(device)
            loss = model(batch)
            optimizer_step(
                model,
                optimizer,
                loss,
                params["grad_clip"],
                f"language model loss became {{loss}} at epoch {epoch}, batch {step}: lower pretrain_lm.lr",
            )
            total += loss.item() * len(idx)
            seen += len(idx)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total / seen:.3f}")
        seconds = time.perf_counter() - start
        val_loss = mean_loss(model, val_rows, params["batch_size"], device)
        row = {
            "epoch": epoch,
            "train_loss": round(total / seen, 6),
            "val_loss": round(val_loss, 6),
            "val_perplexity": round(math.exp(val_loss), 2),
            "tokens": int(seen * params["bptt"]),
            "seconds": round(seconds, 1),
            "tokens_per_second": round(seen * params["bptt"] / seconds, 1),
        }
        history.append(row)
        log(
            f"language model epoch {epoch}: train loss {row['train_loss']:.4f} | val loss {val_loss:.4f} "
            f"(perplexity {row['val_perplexity']:.1f}) | {seconds:.0f}s, {row['tokens_per_second']:.0f} tokens/s"
        )
    return history


def pretrain_lm(params_path, paths):
    """The pretrain_lm stage: a recurrent language model on the training and unlabelled reviews (never
    the test reviews).

    `paths` maps reviews, vocab, out, metrics to files, as dvc.yaml names them.
    """

    params = load_section(params_path, "pretrain_lm", SCHEMA)
    vocab = read_vocab(paths["vocab"])
    cutoffs = check_settings(params, len(vocab))
    table = read_table(paths["reviews"])
    text = table.filter(pc.is_in(table["split"], value_set=pa.array(params["sources"])))["text"]
    if len(text) == 0:
        raise PipelineError(
            f"{paths['reviews']} has no {' or '.join(params['sources'])} reviews: check the ingest report"
        )
    words, _ = split_words(text)
    stream = encode(words, vocab)  # reviews one after another, as one running text

    rows = sequences(stream, params["bptt"])
    order = np.random.default_rng(params["seed"]).permutation(len(rows))
    n_val = max(1, int(len(rows) * params["val_fraction"]))
    if n_val >= len(rows):
        raise PipelineError(
            f"{len(rows)} sequences are too few to hold out {n_val} for validation: lower pretrain_lm.bptt"
        )
    val_rows, train_rows = rows[order[:n_val]], rows[order[n_val:]]

    configure_cpu(params["threads"])
    seed_everything(params["seed"])
    device = pick_device(params["device"])
    config = {k: params[k] for k in ("cell", "num_layers", "embed_dim", "hidden_dim", "dropout")}
    config.update(vocab_size=len(vocab), cutoffs=cutoffs)
    model = LanguageModel(**config)
    print(
        f"language model: {len(stream):,} tokens from {len(text):,} reviews ({', '.join(params['sources'])}), "
        f"{len(train_rows):,} training and {len(val_rows):,} validation sequences of {params['bptt']}",
        flush=True,
    )
    history = pretrain(model, train_rows, val_rows, params, device)

    save_pretrained(paths["out"], "lm", config, model.encoder_state(), vocab_sha256(vocab), history=history)
    write_json(
        paths["metrics"],
        {
            "corpus_tokens": int(len(stream)),
            "reviews": int(len(text)),
            "parameters": sum(p.numel() for p in model.parameters()),
            "final_val_loss": history[-1]["val_loss"],
            "final_val_perplexity": history[-1]["val_perplexity"],
            "seconds": round(sum(r["seconds"] for r in history), 1),
            "epochs": history,
        },
    )
