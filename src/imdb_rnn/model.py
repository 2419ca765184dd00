"""One recurrent classifier family: the cell is picked by name from the registry (`cells.CELLS`).

Padding never changes a result. Reviews in a
batch are left-aligned (padding after the real tokens) and the backward direction reads each review
reversed within its own length, so both directions are causal over the real tokens: the output at a
review's real step never depends on its padding. Max, mean and attention pooling read only real
steps (masked), so one padded fused call per layer and direction is exact. `last` pooling reads the
final state, which padding would reach: there each layer runs over the time span that all
still-running reviews share, then carries the state of the longer ones into the next span
(`run_spans`). A batch of similar lengths (see `batches.bucketed`) needs only a few spans.

Tensors are time-major ([T, B, ...]) inside the model: the fused CPU kernels want that layout.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .cells import check_cell

POOLINGS = ("last", "mean", "max", "attention")


def parameter_count(**config):
    """The numbers in the state_dict of RecurrentClassifier(**config), counted on PyTorch's meta device:
    nothing is allocated, so a model that memory cannot hold is refused before it is built."""
    with torch.device("meta"):
        model = RecurrentClassifier(**config)
    return sum(t.numel() for t in model.state_dict().values())


def reversal_index(lengths, steps):
    """Flat row index that reverses each review's first `length` steps of a time-major [T, B, ...]
    tensor (flattened to [T * B, ...]), leaving the padding after them in place."""
    batch = lengths.numel()
    t = torch.arange(steps, device=lengths.device)[:, None]
    source = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return (source * batch + torch.arange(batch, device=lengths.device)[None, :]).reshape(-1)


def reverse(x, index):
    """x [T, B, ...] with each review reversed within its length (index from `reversal_index`)."""
    return x.reshape(-1, *x.shape[2:]).index_select(0, index).reshape(x.shape)


def run_spans(rnn, x, lengths):
    """Run a one-direction, one-layer `rnn` over time-major `x` [T, B, E] exactly.

    `lengths` must be sorted in descending order. Returns (outputs [T, B, H] with zeros after
    each review's end, final state after each review's last real token).
    """
    batch = x.size(1)
    ends = torch.unique(lengths).tolist()  # ascending distinct lengths: the span boundaries
    # number of reviews still running after each boundary (a prefix, since lengths are sorted)
    running = [int((lengths > end).sum()) for end in ends]
    outputs, finals, state, start, active = [], [], None, 0, batch
    for end, still in zip(ends, running):
        out, state = rnn(x[start:end, :active], state)
        outputs.append(F.pad(out, (0, 0, 0, batch - active)))
        # reviews active..still ended exactly at `end`: their state is final
        finals.append(_slice_state(state, still, active))
        state = _slice_state(state, 0, still)
        start, active = end, still
    final = _cat_state(finals[::-1])
    out = torch.cat(outputs, dim=0)
    if out.size(0) < x.size(0):
        out = F.pad(out, (0, 0, 0, 0, 0, x.size(0) - out.size(0)))
    return out, final


def _slice_state(state, lo, hi):
    if isinstance(state, tuple):
        return tuple(s[:, lo:hi] for s in state)
    return state[:, lo:hi]


def _cat_state(states):
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states))
    return torch.cat(states, dim=1)


def pool_over_time(x, mask, lengths, how):
    """Max or mean of time-major x [T, B, F] over each review's real steps (mask [T, B]).

    Steps before the shortest review's end are real for every review and need no mask.
    """
    shortest = int(lengths[-1])  # lengths are sorted in descending order
    head, tail = x[:shortest], x[shortest:]
    if how == "max":
        pooled = head.amax(0)
        if tail.size(0):
            pooled = torch.maximum(pooled, tail.masked_fill(~mask[shortest:, :, None], float("-inf")).amax(0))
        return pooled
    total = head.sum(0)
    if tail.size(0):
        total = total + tail.masked_fill(~mask[shortest:, :, None], 0).sum(0)
    return total / lengths[:, None].to(x.dtype)


class RecurrentClassifier(nn.Module):
    """Embedding -> (bi)directional recurrent layers -> pooling -> one logit.

    forward(ids, lengths): ids [B, T] left-aligned (padding after the real tokens), lengths [B] ->
    logits [B]. `cell` names a registered recurrence (cells.CELLS; an unknown name raises PipelineError).
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
        options=None,
    ):
        super().__init__()
        self.cell = check_cell(cell)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}: known poolings are {', '.join(POOLINGS)}")
        if bidirectional and not self.cell.bidirectional:
            raise ValueError(f"the {cell} cell cannot read a review backwards: set bidirectional: false")
        directions = 2 if bidirectional else 1
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(embed_dropout)
        # one module per layer and direction, so that each direction can start at its own first token; a cell
        # that is a whole stack (cells.Cell.stack) is one module per direction
        options = options or {}
        if self.cell.stack:
            stack = [self.cell.layer(embed_dim, hidden_dim, num_layers, **options) for _ in range(directions)]
            self.layers = nn.ModuleList([nn.ModuleList(stack)])
        else:
            self.layers = nn.ModuleList(
                nn.ModuleList(
                    self.cell.layer(embed_dim if layer == 0 else hidden_dim * directions, hidden_dim, **options)
                    for _ in range(directions)
                )
                for layer in range(num_layers)
            )
        self.dropout = nn.Dropout(dropout)
        features = hidden_dim * directions
        if pooling == "attention":
            # additive (Bahdanau-style) scoring: v . tanh(W h_t)
            self.attention = nn.Sequential(
                nn.Linear(features, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1, bias=False)
            )
        self.head = nn.Linear(features, 1)

    def forward(self, ids, lengths, return_attention=False):
        lengths = lengths.to(ids.device)
        order = torch.argsort(lengths, descending=True, stable=True)
        ids, lengths = ids[order], lengths[order]
        steps = int(lengths[0])
        x = self.embed_dropout(self.embedding(ids[:, :steps].t()))  # [T, B, E]
        # the real steps, for the poolings that read every step (`last` reads final states instead)
        mask = None if self.pooling == "last" else torch.arange(steps, device=ids.device)[:, None] < lengths[None, :]
        flip = reversal_index(lengths, steps) if len(self.layers[0]) == 2 else None
        for depth, directions in enumerate(self.layers):
            if depth:
                x = self.dropout(x)
            inputs = [x] if len(directions) == 1 else [x, reverse(x, flip)]
            outs, finals = [], []
            for rnn, inp in zip(directions, inputs):
                out, final = run_spans(rnn, inp, lengths) if self.pooling == "last" else rnn(inp)
                outs.append(out)
                finals.append(final)
            if depth < len(self.layers) - 1 or self.pooling == "attention":
                # a per-step reader (next layer, attention) needs both directions' states of a token
                # side by side; max and mean pool each feature on its own, in any step order
                if len(directions) == 2:
                    outs[1] = reverse(outs[1], flip)
                x = torch.cat(outs, dim=-1)
        weights = None
        if self.pooling == "last":
            pooled = torch.cat([(f[0] if isinstance(f, tuple) else f)[-1] for f in finals], dim=-1)
        elif self.pooling in ("max", "mean"):
            pooled = torch.cat([pool_over_time(out, mask, lengths, self.pooling) for out in outs], dim=-1)
        else:
            scores = self.attention(x).squeeze(-1).masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=0)  # [T, B]
            pooled = torch.einsum("tb,tbf->bf", weights, x)
            weights = weights.t()
        logits = self.head(self.dropout(pooled)).squeeze(-1)
        unsort = torch.argsort(order)
        if return_attention:
            return logits[unsort], weights[unsort] if weights is not None else None
        return logits[unsort]
