"""The gated orthogonal recurrent unit (GORU): a GRU whose candidate reads the state through an
orthogonal matrix and a modReLU.

Jing, Gulcehre, Peurifoy, Shen, Tegmark, Soljačić & Bengio 2019, Gated orthogonal recurrent units:
on learning to forget (Neural Computation 31(4); arXiv:1706.02761):

    r_t = σ(W_r x_t + R_r h_{t-1} + b_r)
    z_t = σ(W_z x_t + R_z h_{t-1} + b_z)
    h̃_t = modReLU(W_h x_t + r_t ⊙ (U h_{t-1}), b_h),    U orthogonal
    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ h̃_t

with modReLU(a, b) = sign(a) ⊙ relu(|a| + b) (Arjovsky, Shah & Bengio 2016, real-valued). z is the
paper's sign convention (and its authors' code's): z_t near 1 keeps the old state, near 0 takes the
candidate, the reverse of nn.GRU's. The paper's U is a product of Givens rotations (EUNN); here it is
PyTorch's orthogonal parametrization (torch.nn.utils.parametrizations.orthogonal: U = B·exp(A - Aᵀ)),
which stays orthogonal under any optimiser step.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from .registry import register


def modrelu(a, bias):
    """sign(a) ⊙ relu(|a| + bias): keeps each unit's sign and shifts its magnitude (a [..., H], bias [H])."""
    return a.sign() * F.relu(a.abs() + bias)


@register(
    "goru",
    gates=3,
    paper="Jing, Gulcehre, Peurifoy, Shen, Tegmark, Soljačić & Bengio 2019, "
    "Gated orthogonal recurrent units: on learning to forget",
)
class GORU(nn.Module):
    """One layer, one direction: forward(x [T, B, I], state=None) -> (outputs [T, B, H], h [1, B, H]).

    weight_ih [3H, I]: W_r, W_z, W_h; weight_hh [2H, H]: R_r, R_z; bias [2H]: b_r, b_z; bias_modrelu [H]:
    b_h; recurrent.weight [H, H]: U, orthogonal (stored as the parametrization's original and base).
    U starts as a random orthogonal matrix (the paper's rotation angles start uniform in (-π, π)), b_h at
    0.01 (as in the authors' code), the rest uniform(-1/sqrt(H), 1/sqrt(H)), as PyTorch's recurrent layers.
    """

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        self.bias_modrelu = nn.Parameter(torch.empty(hidden_size))
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)
        bound = 1 / math.sqrt(hidden_size)
        for weight in (self.weight_ih, self.weight_hh, self.bias):
            nn.init.uniform_(weight, -bound, bound)
        # modReLU jumps by 2 b_h where its input crosses 0: a small b_h starts it near the identity
        nn.init.constant_(self.bias_modrelu, 0.01)
        if self.recurrent.weight.is_meta:
            # registering reads the start matrix's values (is it orthogonal already?), which a meta tensor
            # has not: register without that step, then add the base buffer it would have made, so that a
            # meta build has the state_dict of a real one (model.parameter_count counts it)
            orthogonal(self.recurrent, use_trivialization=False)
            self.recurrent.parametrizations.weight[0].register_buffer("base", torch.empty_like(self.recurrent.weight))
        else:
            nn.init.normal_(self.recurrent.weight)
            orthogonal(self.recurrent)  # the start matrix becomes the orthogonal factor of its QR: a random rotation

    def forward(self, x, state=None):
        steps, batch, hidden = x.size(0), x.size(1), self.hidden_size
        h = x.new_zeros(batch, hidden) if state is None else state[0]
        # the gate biases folded into every step's input product; W_h x_t has none (b_h acts inside modReLU)
        inputs = F.linear(x, self.weight_ih, F.pad(self.bias, (0, hidden))).view(steps, batch, 3, hidden)
        # U is computed from its parametrization once a call, not once a step; with R_r and R_z it makes
        # one [3H, H] product a step
        recurrent = torch.cat([self.weight_hh, self.recurrent.weight]).t()
        outputs = []
        for pre in inputs.unbind(0):  # unbind: one gradient tensor for all steps, not one full-size one per step
            rec = (h @ recurrent).view(batch, 3, hidden)
            reset, update = (pre[:, :2] + rec[:, :2]).sigmoid().unbind(1)
            candidate = modrelu(torch.addcmul(pre[:, 2], reset, rec[:, 2]), self.bias_modrelu)
            # z ⊙ h + (1 - z) ⊙ h̃, as h̃ + z ⊙ (h - h̃); torch.lerp would refuse autocast's mixed dtypes
            h = torch.addcmul(candidate, update, h - candidate)
            outputs.append(h)
        return torch.stack(outputs), h.unsqueeze(0)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}"
