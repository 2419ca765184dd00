"""The optimiser and its step, shared by the classifier and the language model."""

import torch
from torch import nn

from .artifacts import PipelineError


def make_optimizer(model, lr, weight_decay=0.0):
    """Adam over the trainable parameters (already on their device), as one fused kernel where
    PyTorch has one: the update of a 25,000-word embedding is a large share of a small model's step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") for p in trainable)
    return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay, fused=fused)


def optimizer_step(model, optimizer, loss, grad_clip, error, extra_backward=None):
    """One optimisation step on `loss` (a scalar tensor); a non-finite loss raises PipelineError(`error`
    with its {loss} filled in).

    `extra_backward`, when given, is called after loss.backward() to add further gradients before
    the step (the adversarial loss, which needs the clean loss's gradient first).
    """
    if not torch.isfinite(loss):
        raise PipelineError(error.format(loss=loss.item()))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if extra_backward:
        extra_backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
