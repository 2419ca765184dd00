"""A multi-dimensional LSTM over a 2-D layout of a review (Graves, Fernández & Schmidhuber, ICANN 2007,
"Multi-dimensional recurrent neural networks").

The review's tokens are laid out in rows of `row_len` tokens (the first row_len tokens are row 0, and so
on). The cell at row r and column c reads its input x_{r,c} and the states of its two predecessors, the
cell above, (h¹, c¹) = (h, c)_{r-1,c}, and the cell to the left, (h², c²) = (h, c)_{r,c-1} (zeros off
the grid), with one forget gate per axis:

    [i; f¹; f²; g; o] = W x_{r,c} + U¹ h¹ + U² h² + b
    c_{r,c} = σ(f¹) ⊙ c¹ + σ(f²) ⊙ c² + σ(i) ⊙ tanh(g)
    h_{r,c} = σ(o) ⊙ tanh(c_{r,c})

(without the original's peephole connections). Both predecessors come earlier in reading order, so the
output at a token depends only on the tokens up to it: the padding after a review never reaches it,
and a bidirectional model's second direction, which reads each review reversed, scans the layout from
the opposite corner.

The cells of one anti-diagonal (r + c = k) depend only on the diagonal before, so a scan takes
rows + row_len - 1 sequential steps, each over a whole diagonal at once: 47 for 512 tokens in rows of 32,
against 512 for a 1-D layer.
"""

import math

import torch
from torch import nn

from ..params import Param
from .registry import register


@register(
    "mdlstm",
    gates=5,
    carries_state=False,
    options={"row_len": Param(int, min=1, max=100_000)},
    paper="Graves, Fernández & Schmidhuber 2007, Multi-dimensional recurrent neural networks (ICANN)",
)
class MDLSTM(nn.Module):
    """forward(x [T, B, input_size], state=None) -> (outputs [T, B, H], (h [1, B, H], c [1, B, H])).

    The layout has ceil(T / row_len) rows; the returned state is the last token's. It starts from zeros
    every call (state must be None): a 2-D scan cannot continue a span from a 1-D state.
    Weights: weight_ih [5H, input_size] (W), weight_hh [5H, 2H] ([U¹ U²]), bias [5H]; gates in the
    order i, f¹ (from above), f² (from the left), g, o.
    """

    def __init__(self, input_size, hidden_size, row_len=32):
        super().__init__()
        self.hidden_size, self.row_len = hidden_size, row_len
        self.weight_ih = nn.Parameter(torch.empty(5 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(5 * hidden_size, 2 * hidden_size))
        self.bias = nn.Parameter(torch.empty(5 * hidden_size))
        bound = 1 / math.sqrt(hidden_size)  # nn.LSTM's initialisation
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, x, state=None):
        if state is not None:
            raise ValueError("an mdlstm layer starts from zeros: it cannot continue from a state")
        steps, batch = x.size(0), x.size(1)
        cols = min(self.row_len, steps)
        rows = -(-steps // cols)
        index, inverse = diagonal_order(rows, cols, x.device)
        # every position's input product at once, read diagonal by diagonal; positions past the end are
        # zeros, and nothing before them reads them
        projected = torch.nn.functional.linear(x, self.weight_ih, self.bias)
        projected = torch.cat([projected, projected.new_zeros(rows * cols - steps, batch, projected.size(-1))])
        # one piece per diagonal (split, as unbind: slicing one step at a time would cost a full-size
        # gradient tensor per step in the backward pass)
        sizes = [min(rows - 1, k) - max(0, k - cols + 1) + 1 for k in range(rows + cols - 1)]
        diagonals = projected.index_select(0, index).split(sizes)
        zero = x.new_zeros(1, batch, self.hidden_size)
        h_prev, c_prev, outputs, cells = zero, zero, [], []
        for k, inputs in enumerate(diagonals):
            low, high = max(0, k - cols + 1), min(rows - 1, k)
            # the previous diagonal holds rows max(0, k - cols).., framed by zeros (index 0 and the last): row r
            # of this one reads its row r - 1 (the cell above, none in row 0) and its row r (the cell to the
            # left, none in column 0); a missing one reads the frame's zeros
            first_prev = max(0, k - cols)
            h_frame, c_frame = torch.cat([zero, h_prev, zero]), torch.cat([zero, c_prev, zero])
            rows_k = torch.arange(low, high + 1, device=x.device)
            above = torch.where(rows_k >= 1, rows_k - first_prev, 0)
            left = torch.where(rows_k <= k - 1, rows_k - first_prev + 1, 0)
            h1, c1 = h_frame.index_select(0, above), c_frame.index_select(0, above)
            h2, c2 = h_frame.index_select(0, left), c_frame.index_select(0, left)
            gates = inputs + torch.cat([h1, h2], dim=-1) @ self.weight_hh.t()
            i, f1, f2, g, o = gates.chunk(5, dim=-1)
            c = torch.sigmoid(f1) * c1 + torch.sigmoid(f2) * c2 + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
            cells.append(c)
            h_prev, c_prev = h, c
        out = torch.cat(outputs).index_select(0, inverse)[:steps]
        last = torch.cat(cells).index_select(0, inverse)[steps - 1 : steps]
        return out, (out[-1:], last)


def diagonal_order(rows, cols, device):
    """(index, inverse): index lists the reading-order positions r * cols + c diagonal by diagonal (r + c = k,
    r ascending); inverse puts diagonal order back into reading order."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    key = (r + c) * rows + r  # diagonal first, then row
    index = torch.argsort(key.reshape(-1))
    return index.to(device), torch.argsort(index).to(device)
