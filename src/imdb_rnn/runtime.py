"""Where and how a process computes: device, CPU threads, seeds."""

import os
import random

import numpy as np
import torch

from .artifacts import PipelineError, usable_cores


def pick_device(name, local_rank=0):
    """The torch.device for `name` (auto, cpu or cuda); each data-parallel process on a GPU machine
    takes its own GPU. Raises PipelineError for cuda where no CUDA device is visible."""
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("device is cuda but no CUDA device is visible: set it to auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


def native_bfloat16(device):
    """Whether `device` multiplies bfloat16 matrices in hardware: a CUDA GPU that supports bfloat16, or
    a CPU with AMX or AVX512-BF16 (oneDNN's bfloat16 kernels; elsewhere bfloat16 is emulated and slow)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def training_precision(precision, device, model):
    """The precision a training run uses: `precision` itself, or for auto, bfloat16 autocast where it pays,
    float32 elsewhere. It pays on a CPU with native bfloat16 for a model with LSTM layers: PyTorch's CPU
    autocast runs the LSTM kernel in bfloat16 (oneDNN) but not the GRU or the tanh RNN, which would only
    pay for the casts (docs/benchmarks.md: bilstm 1.54x, gru 0.92x). On a GPU at these sizes float32 is
    faster (bilstm 0.80x in bfloat16 on an H200, docs/benchmarks.md#the-gpu-path)."""
    if precision != "auto":
        return precision
    device = torch.device(device)
    lstm = any(isinstance(module, torch.nn.LSTM) for module in model.modules())
    return "bfloat16" if device.type == "cpu" and lstm and native_bfloat16(device) else "float32"


def configure_cpu(threads):
    """`threads` per process, or 0: the usable cores shared out between the processes on this machine.

    Also flushes denormal floats to zero: gradients fading through hundreds of recurrent steps
    become denormal, and CPU arithmetic on denormals is many times slower (bench_train.py).
    """
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, usable_cores() // processes))
    torch.set_flush_denormal(True)


def seed_everything(seed):
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels (warnings where it has none)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
