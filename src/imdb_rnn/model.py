"""One recurrent classifier family: the cell (RNN, LSTM, GRU) is picked by name.

Padding never reaches a recurrent cell. Reviews in a batch are left-aligned and sorted by length;
each layer runs PyTorch's fused recurrent kernel over the time span that all still-running reviews
share, then carries the hidden state of the longer ones into the next span. A batch of reviews of
similar length (see `batches.bucketed`) needs only a few spans, so this is as fast as a padded
call and as exact as a packed one: the state read out is the one after each review's last token.
"""

import torch
import torch.nn.functional as F
from torch import nn

CELLS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
POOLINGS = ("last", "mean", "max", "attention")


def reverse_within_length(x, lengths):
    """Reverse each row's first `length` steps, leaving the padding after them in place."""
    steps = torch.arange(x.size(1), device=x.device)
    idx = torch.where(steps[None, :] < lengths[:, None], lengths[:, None] - 1 - steps[None, :], steps[None, :])
    return x.gather(1, idx[:, :, None].expand_as(x)) if x.dim() == 3 else x.gather(1, idx)


def run_spans(rnn, x, lengths):
    """Run a one-direction, one-layer `rnn` over left-aligned `x` [B, T, E] exactly.

    `lengths` must be sorted in descending order. Returns (outputs [B, T, H] with zeros after
    each review's end, final state after each review's last real token).
    """
    batch = x.size(0)
    ends = torch.unique(lengths).tolist()  # ascending distinct lengths: the span boundaries
    # number of reviews still running after each boundary (a prefix, since lengths are sorted)
    running = [int((lengths > end).sum()) for end in ends]
    outputs, finals, state, start, active = [], [], None, 0, batch
    for end, still in zip(ends, running):
        out, state = rnn(x[:active, start:end], state)
        outputs.append(F.pad(out, (0, 0, 0, 0, 0, batch - active)))
        # reviews active..still ended exactly at `end`: their state is final
        finals.append(_slice_state(state, still, active))
        state = _slice_state(state, 0, still)
        start, active = end, still
    final = _cat_state(finals[::-1])
    out = torch.cat(outputs, dim=1)
    if out.size(1) < x.size(1):
        out = F.pad(out, (0, 0, 0, x.size(1) - out.size(1)))
    return out, final


def _slice_state(state, lo, hi):
    if isinstance(state, tuple):
        return tuple(s[:, lo:hi] for s in state)
    return state[:, lo:hi]


def _cat_state(states):
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states))
    return torch.cat(states, dim=1)


class RecurrentClassifier(nn.Module):
    """Embedding -> (bi)directional recurrent layers -> pooling -> one logit.

    forward(ids, lengths): ids [B, T] left-aligned (padding after the real tokens), lengths [B].
    """

    def __init__(
        self,
        vocab_size,
        embed_dim=100,
        hidden_dim=32,
        cell="rnn",
        num_layers=1,
        bidirectional=False,
        pooling="last",
        dropout=0.0,
        embed_dropout=0.0,
        attention_dim=64,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}: known cells are {', '.join(CELLS)}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}: known poolings are {', '.join(POOLINGS)}")
        rnn_class = getattr(nn, CELLS[cell])
        directions = 2 if bidirectional else 1
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(embed_dropout)
        # one module per layer and direction, so that each direction can start at its own first token
        self.layers = nn.ModuleList(
            nn.ModuleList(
                rnn_class(embed_dim if layer == 0 else hidden_dim * directions, hidden_dim, batch_first=True)
                for _ in range(directions)
            )
            for layer in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        features = hidden_dim * directions
        if pooling == "attention":
            # additive (Bahdanau-style) scoring: v . tanh(W h_t)
            self.attention = nn.Sequential(nn.Linear(features, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1, bias=False))
        self.head = nn.Linear(features, 1)

    def forward(self, ids, lengths, return_attention=False):
        lengths = lengths.to(ids.device)
        order = torch.argsort(lengths, descending=True, stable=True)
        ids, lengths = ids[order], lengths[order]
        ids = ids[:, : int(lengths.max())]
        x = self.embed_dropout(self.embedding(ids))
        for depth, directions in enumerate(self.layers):
            if depth:
                x = self.dropout(x)
            out, final = run_spans(directions[0], x, lengths)
            outs, finals = [out], [final]
            if len(directions) == 2:
                out, final = run_spans(directions[1], reverse_within_length(x, lengths), lengths)
                outs.append(reverse_within_length(out, lengths))
                finals.append(final)
            x = torch.cat(outs, dim=-1)
        mask = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]
        weights = None
        if self.pooling == "last":
            pooled = torch.cat([(f[0] if isinstance(f, tuple) else f)[-1] for f in finals], dim=-1)
        elif self.pooling == "mean":
            pooled = x.sum(1) / lengths[:, None].to(x.dtype)
        elif self.pooling == "max":
            pooled = x.masked_fill(~mask[:, :, None], float("-inf")).max(1).values
        else:
            scores = self.attention(x).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=1)
            pooled = torch.bmm(weights[:, None, :], x).squeeze(1)
        logits = self.head(self.dropout(pooled)).squeeze(-1)
        unsort = torch.argsort(order)
        if return_attention:
            return logits[unsort], weights[unsort] if weights is not None else None
        return logits[unsort]
