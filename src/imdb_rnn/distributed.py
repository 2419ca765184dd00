"""Data-parallel training: PyTorch's elastic launcher and DistributedDataParallel, nothing home-made.

With `train.processes` N > 1 the train stage starts N copies of itself through `launch` (what
`torchrun --standalone --nproc_per_node N` does, called in-process so that a failure is one line);
each copy reads WORLD_SIZE / RANK / LOCAL_RANK from the environment the launcher sets. With one
process every helper here is a no-op. `torchrun ... stages/train.py` by hand works the same way.
"""

import logging
import os
import sys
import uuid
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .pipeline import PEER_STOPPED, PipelineError, die_with_parent, in_worker


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main_process(self):
        """Rank 0 alone writes checkpoints, metrics and logs."""
        return self.rank == 0

    @property
    def active(self):
        return self.world_size > 1


def die_with_launcher():
    """Under torchrun, have the kernel SIGKILL this worker when torchrun's agent dies.

    torchrun starts each worker in a session of its own, so killing dvc's process group (the agent
    with it) would otherwise leave the worker training on, and writing outputs, with no one waiting.
    """
    if in_worker():
        die_with_parent()


def launch(processes, script, args):
    """Run `python script *args` as `processes` data-parallel workers on this machine; wait for them.

    The workers print their own output. When one fails, the others are stopped and this raises
    PipelineError with the failing worker's own error line (written by pipeline.run_main into the
    launcher's per-worker error file), so a failure prints one line, not torchrun's traceback.
    KeyboardInterrupt is raised when this process is interrupted (SIGINT/SIGTERM reach the workers too).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the agent logs every step and every failure at length (each module its own logger, with its own
    # level); the one line below says what matters
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    try:
        elastic_launch(config, sys.executable)(script, *map(str, args))
    except SignalException:
        raise KeyboardInterrupt from None
    except ChildFailedError as err:
        # the first worker to fail says why; the others stopped because of it (interrupted by the
        # launcher, or their collective failed: PEER_STOPPED), maybe within the same second. A worker
        # that died without a word (killed, crashed) is the cause when every line is a consequence.
        consequences = ("error: interrupted", f"error: {PEER_STOPPED}")
        failures = sorted(err.failures.items(), key=lambda item: item[1].timestamp)
        told = {
            rank: f.message for rank, f in failures if isinstance(f.message, str) and f.message.startswith("error: ")
        }
        causes = [message for message in told.values() if message not in consequences]
        silent = [(rank, f) for rank, f in failures if rank not in told]
        if causes or not silent:
            raise PipelineError((causes or list(told.values()))[0].removeprefix("error: ")) from None
        rank, failure = silent[0]
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        raise PipelineError(
            f"training process {rank} of {processes} died ({how}) before it could say why; "
            "rerun with train.processes=1 to see the problem"
        ) from None


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


def shard(batches, context):
    """This rank's share of an epoch's batches: every rank gets the same number (DDP steps in lockstep)."""
    if not context.active:
        return batches
    per_rank = len(batches) // context.world_size
    return batches[context.rank : per_rank * context.world_size : context.world_size]


def used(batches, context):
    """The batches some rank trains on this epoch (the tail that does not divide evenly is skipped)."""
    return batches[: len(batches) // context.world_size * context.world_size]


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
    out = [None] * context.world_size
    dist.all_gather_object(out, obj)
    return out
