"""Where and how a process computes: device, CPU threads, seeds."""

import os
import random

import numpy as np
import torch

from .artifacts import PipelineError


def pick_device(name, local_rank=0):
    """The torch.device for `name` (auto, cpu or cuda); each data-parallel process on a GPU machine
    takes its own GPU. Raises PipelineError for cuda where no CUDA device is visible."""
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("device is cuda but no CUDA device is visible: set it to auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


def configure_cpu(threads):
    """`threads` per process, or 0: the cores shared out between the processes on this machine.

    Also flushes denormal floats to zero: gradients fading through hundreds of recurrent steps
    become denormal, and CPU arithmetic on denormals is many times slower (bench_train.py).
    """
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // processes))
    torch.set_flush_denormal(True)


def seed_everything(seed):
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels (warnings where it has none)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
