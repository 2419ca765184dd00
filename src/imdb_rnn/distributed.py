"""Data-parallel training under torchrun: PyTorch's DistributedDataParallel, nothing home-made.

`python -m torch.distributed.run --nproc_per_node N stages/train.py ...` starts N copies of the
stage; each reads WORLD_SIZE / RANK / LOCAL_RANK from the environment that torchrun sets. With one
process (plain `python`, or torchrun with N=1) every helper here is a no-op.
"""

import ctypes
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self):
        """Rank 0 alone writes checkpoints, metrics and logs."""
        return self.rank == 0

    @property
    def active(self):
        return self.world > 1


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_launcher():
    """Under torchrun, have the kernel SIGKILL this worker when torchrun's agent dies.

    torchrun starts each worker in a session of its own, so killing dvc's process group (the agent
    with it) would otherwise leave the worker training on, and writing outputs, with no one waiting.
    """
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher:  # the agent died before the signal was armed
        os._exit(1)


def setup(device_type):
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPUs); return the Context."""
    die_with_launcher()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Context()
    context = Context(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return context


def shutdown(context):
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model, context, device):
    """The model wrapped in DistributedDataParallel when more than one process trains it."""
    if not context.active:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model):
    return getattr(model, "module", model)


def shard(batches, context):
    """This rank's share of an epoch's batches: every rank gets the same number (DDP steps in lockstep)."""
    if not context.active:
        return batches
    per_rank = len(batches) // context.world
    return batches[context.rank : per_rank * context.world : context.world]


def used(batches, context):
    """The batches some rank trains on this epoch (the tail that does not divide evenly is skipped)."""
    return batches[: len(batches) // context.world * context.world]


def sum_over_ranks(values, context):
    """Element-wise sum of a list of numbers over every rank."""
    if not context.active:
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def gather(obj, context):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not context.active:
        return [obj]
    out = [None] * context.world
    dist.all_gather_object(out, obj)
    return out
