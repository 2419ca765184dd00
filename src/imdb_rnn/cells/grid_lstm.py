"""A 2-D Grid LSTM over time x depth (Kalchbrenner, Danihelka & Graves, ICLR 2016, "Grid Long Short-Term Memory").

A stacked LSTM passes only its hidden vector upward. A Grid LSTM puts LSTM cells along depth as well as
along time, so a layer passes its memory up too, and gates across layers what an LSTM gates across
steps. The block at layer l and step t reads, along time, (h_{l,t-1}, m_{l,t-1}) from the step before on
its own layer and, along depth, (d_{l-1,t}, n_{l-1,t}) from the layer below at its own step. Both hidden
vectors are concatenated and each dimension has an LSTM transform with weights of its own:

    H_{l,t} = [d_{l-1,t}; h_{l,t-1}]
    (h_{l,t}, m_{l,t}) = LSTM_time(H_{l,t}, m_{l,t-1})
    (d_{l,t}, n_{l,t}) = LSTM_depth(H_{l,t}, n_{l-1,t})

with LSTM(H, m): [i; f; g; o] = W H + b, m' = σ(f) ⊙ m + σ(i) ⊙ tanh(g), h' = σ(o) ⊙ tanh(m'). The bottom
layer's depth input is the projected embedding, d_{0,t} = P x_t with n_{0,t} = 0 (the paper's input
projection), and the output at step t is the top layer's depth output d_{L,t}.

LSTM_time reads d_{l-1,t} as its input and h_{l,t-1} as its recurrent state: it is an ordinary LSTM layer
over the depth outputs below, so it runs as PyTorch's fused kernel. LSTM_depth has no recurrence along
time once a layer's temporal outputs are known, so it is one matrix product over every step.
"""

import torch
from torch import nn

from .registry import register


def _layers_check(settings):
    if settings["num_layers"] < 2:
        return "num_layers", (
            f"is {settings['num_layers']}, but a grid_lstm needs at least 2: its cells along depth "
            "connect a layer to the one below it"
        )
    return None


@register(
    "grid_lstm",
    gates=8,
    stack=True,
    int8=(nn.LSTM, nn.Linear),
    check=_layers_check,
    paper="Kalchbrenner, Danihelka & Graves 2016, Grid Long Short-Term Memory (ICLR)",
)
class GridLSTM(nn.Module):
    """forward(x [T, B, input_size], state=None) -> (outputs [T, B, H], state).

    state: (d [L, B, H], h [L, B, H], m [L, B, H]) at the last step: each layer's depth output (the top
    layer's, d[-1], is the last step's output), then each layer's temporal hidden vector and memory, from
    which the next span of steps continues.
    depth="identity" replaces LSTM_depth by d_{l,t} = h_{l,t} (the temporal output passed up unchanged),
    which makes the grid a stacked LSTM: the tie the tests check.
    """

    def __init__(self, input_size, hidden_size, num_layers, depth="lstm"):
        super().__init__()
        if depth not in ("lstm", "identity"):
            raise ValueError(f"depth must be lstm or identity, got {depth!r}")
        self.hidden_size, self.depth_kind = hidden_size, depth
        self.project = nn.Linear(input_size, hidden_size)
        self.time = nn.ModuleList(nn.LSTM(hidden_size, hidden_size) for _ in range(num_layers))
        self.depth = nn.ModuleList(nn.Linear(2 * hidden_size, 4 * hidden_size) for _ in range(num_layers))

    def forward(self, x, state=None):
        steps, batch, hidden = x.size(0), x.size(1), self.hidden_size
        d = self.project(x)
        n = torch.zeros_like(d)
        if state is None:
            zeros = x.new_zeros(len(self.time), batch, hidden)
            state = (zeros, zeros, zeros)
        finals_d, finals_h, finals_m = [], [], []
        for layer, (time, depth) in enumerate(zip(self.time, self.depth)):
            h0, m0 = state[1][layer : layer + 1], state[2][layer : layer + 1]
            h, (h_last, m_last) = time(d, (h0.contiguous(), m0.contiguous()))
            finals_h.append(h_last)
            finals_m.append(m_last)
            if self.depth_kind == "identity":
                d = h
            else:
                before = torch.cat([h0, h[: steps - 1]])  # h_{l,t-1}: the temporal output one step back
                i, f, g, o = depth(torch.cat([d, before], dim=-1)).chunk(4, dim=-1)
                n = torch.sigmoid(f) * n + torch.sigmoid(i) * torch.tanh(g)
                d = torch.sigmoid(o) * torch.tanh(n)
            finals_d.append(d[-1:])
        return d, (torch.cat(finals_d), torch.cat(finals_h), torch.cat(finals_m))
