"""Terms of the training objective beyond cross entropy, as in Sachan, Zaheer & Salakhutdinov's mixed
objective (AAAI 2019): adversarial training (Goodfellow et al., 2015; Miyato et al., 2017), virtual
adversarial training (Miyato, Dai & Goodfellow, ICLR 2017) and entropy minimisation (Grandvalet &
Bengio, 2005).

Both perturbation terms move each review's embedded tokens (the embedding's output, [T, B, E],
time-major) through one `EmbeddingPerturbation` hook, by a perturbation whose norm is a fixed
fraction of that review's own embedding norm (`per_review`), so that growing the embedding weights
cannot make a perturbation vanish.
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F

# the power iteration's finite-difference step, relative to each review's embedding norm: small
# enough to measure the local curvature, large enough to stay far above float32 rounding
POWER_ITERATION_XI = 1e-3


class EmbeddingPerturbation:
    """A forward hook on the embedding that records its output in the clean pass and moves it in a perturbed pass.

    In training mode, a forward pass with no perturbation set records the embedded tokens
    (`embedded`, [T, B, E] in the model's internal order) and which steps are real tokens (`real`,
    [T, B], from the padding id 0). With `keep_grad`, the recorded tensor also keeps its gradient
    after backward (the adversarial direction; a frozen embedding still gets one). Inside
    `moved(delta)`, every forward pass returns the embedding's output plus `delta` instead.
    """

    def __init__(self, embedding, keep_grad=False):
        self.keep_grad, self.delta, self.embedded, self.real = keep_grad, None, None, None
        self.handle = embedding.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        if self.delta is not None:
            return output + self.delta
        if not module.training:
            return None
        self.real = inputs[0] != 0
        if self.keep_grad and torch.is_grad_enabled():
            if not output.requires_grad:  # a frozen embedding: the attack still needs this gradient
                output = output.detach().requires_grad_()
            output.retain_grad()
            self.embedded = output
            return output
        self.embedded = output
        return None

    def take(self):
        """(embedded [T, B, E], real [T, B]) of the last clean pass, and forget them."""
        taken, self.embedded, self.real = (self.embedded, self.real), None, None
        return taken

    @contextmanager
    def moved(self, delta):
        self.delta = delta
        try:
            yield
        finally:
            self.delta = None

    def remove(self):
        self.handle.remove()


def per_review(direction, embedded, size):
    """`direction` [T, B, E] rescaled so that review b's norm is `size` times that of embedded[:, b]."""
    dims = (0, 2)
    return direction * (
        size * embedded.norm(dim=dims, keepdim=True) / direction.norm(dim=dims, keepdim=True).clamp_min(1e-12)
    )


def adversarial_loss(perturbation, embedded, epsilon, loss):
    """The loss under the perturbation that raises it most to first order (Goodfellow et al., 2015).

    `embedded` is the clean pass's recorded embedding, after the clean loss's backward (it holds
    its gradient); `loss()` runs the model and returns the loss. Returns loss() under the attack.
    """
    delta = per_review(embedded.grad, embedded.detach(), epsilon).detach()
    with perturbation.moved(delta):
        return loss()


def kl_bernoulli(p_logits, q_logits):
    """Mean over reviews of KL(p || q) between two Bernoulli predictions given as logits [B]."""
    p = torch.sigmoid(p_logits)
    return (
        F.binary_cross_entropy_with_logits(q_logits, p, reduction="none")
        - F.binary_cross_entropy_with_logits(p_logits, p, reduction="none")
    ).mean()


def entropy(logits):
    """Mean over reviews of the entropy (nats) of the Bernoulli predictions given as logits [B]."""
    return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(logits))


def random_state(device):
    """The random generators' state before a pass on `device`, so that `replayed` can redraw its dropout masks."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


@contextmanager
def replayed(state):
    """Draw the random numbers a pass drew from `state` (random_state) again; restore the generators after."""
    cpu, cuda = state
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda is not None else []):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)
        yield


def virtual_adversarial_loss(perturbation, clean, logits, epsilon, forward, state, probe=None):
    """The virtual adversarial term (Miyato, Dai & Goodfellow, ICLR 2017): KL(p(x) || p(x + r_vadv)).

    `clean` is (embedded [T, B, E], real [T, B]) from the clean pass, `logits` [B] its predictions
    (held fixed: no gradient flows into them), `forward()` runs the model on the same reviews, and
    `state` (random_state) is the generators' state before the clean pass: every perturbed pass
    reuses the clean pass's dropout masks, so that the term measures the perturbation alone and is 0
    when it is. r_vadv is found by one power iteration from a random direction on the real tokens,
    then scaled per review to `epsilon` times the review's embedding norm. `probe()` (default:
    `forward`) runs the power iteration's pass, whose gradient only reaches the perturbation: the
    unwrapped model where `forward` is a DistributedDataParallel one, which expects a backward after
    every pass. Returns the KL term (a scalar with a gradient with respect to the model's parameters).
    """
    embedded, real = clean[0].detach(), clean[1]
    target = logits.detach()
    d = per_review(torch.randn_like(embedded) * real.unsqueeze(-1), embedded, POWER_ITERATION_XI).requires_grad_()
    with perturbation.moved(d), replayed(state):
        (gradient,) = torch.autograd.grad(kl_bernoulli(target, (probe or forward)().float()), d)
    r_vadv = per_review(gradient * real.unsqueeze(-1), embedded, epsilon).detach()
    with perturbation.moved(r_vadv), replayed(state):
        return kl_bernoulli(target, forward().float())
