"""minGRU: a GRU whose gate and candidate read only the input, so that the state enters each step
through one element-wise multiply-add.

Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, Were RNNs all we needed? (arXiv:2410.01201),
section 3.1 with the positive candidate of its appendix B.3 (as lucidrains' mingru-pytorch has it):

    z_t = σ(Linear_z(x_t))
    h̃_t = g(Linear_h(x_t)),    g(a) = a + 1/2 for a >= 0, σ(a) otherwise
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

No term reads h_{t-1} inside a nonlinearity, so every step's z_t and h̃_t come from one matrix product
over the whole sequence; the loop left is h_t = a_t ⊙ h_{t-1} + b_t.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register


def positive(a):
    """g(a) = a + 1/2 for a >= 0, σ(a) otherwise: continuous, positive, and linear for large a.

    Written as relu(a) + σ(a - relu(a)), the same function in the fewest passes over the whole sequence:
    torch.where's forward and backward took half as long again on the CPU."""
    rectified = F.relu(a)
    return rectified + (a - rectified).sigmoid()


# its time goes to the whole-sequence product and element-wise passes, which bfloat16 autocast speeds up on a
# CPU with native bfloat16 (a bidirectional classifier's training step 1.5x; peephole_lstm and goru gain 1.1x at most)
@register(
    "mingru",
    gates=2,
    paper="Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, Were RNNs all we needed?",
    bfloat16_pays=True,
    int8=(nn.Linear,),
)
class MinGRU(nn.Module):
    """One layer, one direction: forward(x [T, B, I], state=None) -> (outputs [T, B, H], h [1, B, H]).

    linear: nn.Linear(I, 2H), rows Linear_h then Linear_z (mingru-pytorch's order), with a bias; an
    nn.Linear so that dynamic int8 quantization converts it (the cell has no other weight).
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.linear = nn.Linear(input_size, 2 * hidden_size)

    def forward(self, x, state=None):
        hidden_pre, gate_pre = self.linear(x).chunk(2, dim=-1)
        gate = gate_pre.sigmoid()
        keep, add = (1 - gate), gate * positive(hidden_pre)  # a_t and b_t for all steps at once
        h = x.new_zeros(x.size(1), self.hidden_size) if state is None else state[0]
        outputs = []
        for a, b in zip(keep.unbind(0), add.unbind(0)):  # unbind: no full-size gradient tensor per step
            h = torch.addcmul(b, a, h)
            outputs.append(h)
        return torch.stack(outputs), h.unsqueeze(0)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"
