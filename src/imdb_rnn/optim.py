"""The optimiser, its learning-rate schedule and its step, shared by the classifier and the language model."""

import torch
from torch import nn
from torch.optim import lr_scheduler

from .pipeline import PipelineError


def make_optimizer(model, lr, weight_decay=0.0):
    """Adam over the trainable parameters (already on their device), as one fused kernel where
    PyTorch has one: the update of a 25,000-word embedding is a large share of a small model's step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") for p in trainable)
    return torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay, fused=fused)


LR_SCHEDULES = ("constant", "linear", "cosine")


def make_scheduler(optimizer, schedule, total_steps, warmup_steps=0):
    """PyTorch's learning-rate scheduler for `schedule`, stepped once per optimiser step, or None for
    a constant rate without warm-up (then training is exactly that of a run without a scheduler).

    linear decays the rate to 0 at `total_steps`, cosine follows half a cosine to 0 (Loshchilov &
    Hutter, 2017, without restarts); `warmup_steps` > 0 first raises the rate linearly from
    1/warmup_steps of its value, reaching it after warmup_steps steps (Goyal et al., 2017, for
    large batches), and the decay spans the steps left. Raises PipelineError for an
    unknown schedule or a warm-up of `total_steps` or more.
    """
    if schedule not in LR_SCHEDULES:
        raise PipelineError(f"unknown lr_schedule {schedule!r}: use {', '.join(LR_SCHEDULES)}")
    if warmup_steps >= total_steps:
        raise PipelineError(
            f"warmup_steps is {warmup_steps} but training has only {total_steps} steps: lower warmup_steps"
        )
    if schedule == "constant" and not warmup_steps:
        return None
    decay_steps = total_steps - warmup_steps
    decay = {
        "constant": lambda: lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0),
        "linear": lambda: lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=decay_steps),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay_steps),
    }[schedule]
    if not warmup_steps:
        return decay()
    warmup = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps)
    return lr_scheduler.SequentialLR(optimizer, [warmup, decay()], milestones=[warmup_steps])


def optimizer_step(model, optimizer, loss, grad_clip, error, extra_backward=None, scheduler=None):
    """One optimisation step on `loss` (a scalar tensor), then one of `scheduler` if given; a non-finite
    loss raises PipelineError(`error` with its {loss} filled in).

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
    if scheduler:
        scheduler.step()
