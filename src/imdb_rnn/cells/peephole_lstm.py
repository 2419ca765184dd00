"""The LSTM with a forget gate and peephole connections from the cell state into its gates.

Forget gate: Gers, Schmidhuber & Cummins 2000, Learning to forget: continual prediction with LSTM.
Peepholes: Gers & Schmidhuber 2000, Recurrent nets that time and count; Gers, Schraudolph &
Schmidhuber 2002, Learning precise timing with LSTM recurrent networks (JMLR 3).

    i_t = σ(W_i x_t + R_i h_{t-1} + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(W_f x_t + R_f h_{t-1} + p_f ⊙ c_{t-1} + b_f)
    g_t = tanh(W_g x_t + R_g h_{t-1} + b_g)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t = σ(W_o x_t + R_o h_{t-1} + p_o ⊙ c_t + b_o)
    h_t = o_t ⊙ tanh(c_t)

The output gate peeks at the new cell state c_t, the input and forget gates at the old one.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


def step(pre, h, c, recurrent, peep_in, peep_out):
    """One step: pre [B, 4H] (W x_t + b), h and c [B, H], recurrent [H, 4H] (Rᵀ), peep_in [2, H] (p_i, p_f),
    peep_out [H] (p_o) -> (h_t, c_t)."""
    batch, hidden = h.shape
    pre = torch.addmm(pre, h, recurrent).view(batch, 4, hidden)
    # i and f read c_{t-1} through one broadcast multiply-add and one sigmoid
    input_gate, forget_gate = torch.addcmul(pre[:, :2], peep_in, c.unsqueeze(1)).sigmoid().unbind(1)
    c = torch.addcmul(forget_gate * c, input_gate, pre[:, 2].tanh())
    return torch.addcmul(pre[:, 3], peep_out, c).sigmoid() * c.tanh(), c


@register(
    "peephole_lstm",
    gates=4,
    paper="Gers, Schmidhuber & Cummins 2000 (forget gate); Gers & Schmidhuber 2000, "
    "Gers, Schraudolph & Schmidhuber 2002, Learning precise timing with LSTM recurrent networks (peepholes)",
)
class PeepholeLSTM(nn.Module):
    """One layer, one direction: forward(x [T, B, I], state=None) -> (outputs [T, B, H], (h [1, B, H], c [1, B, H])).

    Parameters are nn.LSTM's single layer (weight_ih_l0 [4H, I], weight_hh_l0 [4H, H], bias_ih_l0 and
    bias_hh_l0 [4H]; gate rows i, f, g, o; the same uniform(-1/sqrt(H), 1/sqrt(H)) start), so an
    nn.LSTM's weights load as they are, plus weight_ch [3, H]: the peepholes p_i, p_f, p_o. These start at
    zero, so a fresh cell is exactly a standard LSTM and learns how much to read its cell state from there.
    """

    step = staticmethod(step)  # an instance may swap in a compiled one (benchmarks/bench_cells.py)

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.empty(4 * hidden_size))
        self.weight_ch = nn.Parameter(torch.empty(3, hidden_size))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1 / math.sqrt(self.hidden_size)
        for weight in (self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0):
            nn.init.uniform_(weight, -bound, bound)
        nn.init.zeros_(self.weight_ch)

    def forward(self, x, state=None):
        if state is None:
            h = c = x.new_zeros(x.size(1), self.hidden_size)
        else:
            h, c = state[0][0], state[1][0]
        # every step's input half at once, both biases folded in: the loop keeps only h's product
        inputs = F.linear(x, self.weight_ih_l0, self.bias_ih_l0 + self.bias_hh_l0)
        recurrent, peep_in, peep_out = self.weight_hh_l0.t(), self.weight_ch[:2], self.weight_ch[2]
        outputs = []
        for pre in inputs.unbind(0):  # unbind: one gradient tensor for all steps, not one full-size one per step
            h, c = self.step(pre, h, c, recurrent, peep_in, peep_out)
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"
