"""Where and how a process computes: device, CPU threads, seeds."""

import functools
import os
import random

import numpy as np
import torch

from .cells import CELLS
from .model import parameter_count
from .pipeline import PipelineError, usable_cores


def pick_device(name, local_rank=0):
    """The torch.device for `name` (auto, cpu or cuda); each data-parallel process on a GPU machine
    takes its own GPU. Raises PipelineError for cuda where no CUDA device is visible."""
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("device is cuda but no CUDA device is visible: set it to auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


def native_bfloat16(device):
    """Whether `device` runs bfloat16 in hardware: a CUDA GPU that supports bfloat16, or a CPU with AMX
    or AVX512-BF16 whose oneDNN kernels really run it. The flags alone are not enough: oneDNN may be
    held below them (ONEDNN_MAX_CPU_ISA=AVX2), and then it has no bfloat16 LSTM at all, so one tiny
    LSTM training step under bfloat16 autocast is tried once and remembered (_cpu_runs_bfloat16).
    Elsewhere bfloat16 is emulated: slower than float32, or refused by oneDNN."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bfloat16_flags() and _cpu_runs_bfloat16()


def cpu_bfloat16_flags():
    """Whether the CPU reports AMX or AVX512-BF16 (what it has, not what the kernels may use)."""
    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


@functools.cache
def _cpu_runs_bfloat16():
    # the probe's weights must not move the caller's seed; a caller under no_grad must not fail its backward
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        lstm = torch.nn.LSTM(4, 4)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out, _ = lstm(torch.ones(3, 2, 4))
            out.float().sum().backward()
        except RuntimeError:  # "could not create a primitive descriptor for the LSTM forward propagation primitive"
            return False
    return True


def no_bfloat16_reason(device):
    """Why `device` has no native bfloat16, in words for an error line (native_bfloat16 is False)."""
    device = torch.device(device)
    if device.type != "cpu":
        gpu = device.type == "cuda" and torch.cuda.is_available()
        return (
            f"the GPU {torch.cuda.get_device_name(device)} has no bfloat16"
            if gpu
            else f"no {device.type} device runs bfloat16 here"
        )
    if not cpu_bfloat16_flags():
        return (
            f"this CPU has no native bfloat16 (neither AMX nor AVX512-BF16; its kernels: "
            f"{torch.backends.cpu.get_cpu_capability()}), so bfloat16 would only be emulated"
        )
    return "oneDNN is limited below this CPU's bfloat16 instructions (ONEDNN_MAX_CPU_ISA), so it has no bfloat16 LSTM"


def require_precision(precision, device, what):
    """Raise PipelineError when `precision` is bfloat16 and `device` has no native bfloat16: `what` names
    the setting in the one-line error (train.precision, --precision)."""
    if precision == "bfloat16" and not native_bfloat16(device):
        raise PipelineError(
            f"{what} is bfloat16, but {no_bfloat16_reason(device)}: use float32, or auto "
            "(bfloat16 only where the hardware has it)"
        )


def training_precision(precision, device, model):
    """The precision a training run uses: `precision` itself, or for auto, bfloat16 autocast where it pays,
    float32 elsewhere. It pays on a CPU with native bfloat16 for a cell registered with bfloat16_pays (the
    fused LSTM: PyTorch's CPU autocast runs its kernel in bfloat16 (oneDNN) but not the GRU's or the tanh
    RNN's, which would only pay for the casts; docs/benchmarks.md: bilstm 1.54x, gru 0.92x). On a GPU at
    these sizes float32 is faster (bilstm 0.80x in bfloat16 on an H200, docs/benchmarks.md#the-gpu-path).
    Raises PipelineError for bfloat16 on a device without it (require_precision), or for a cell that
    does not run in bfloat16 (require_cell_precision)."""
    require_precision(precision, device, "train.precision")
    require_cell_precision(precision, model.cell, "train.precision")
    if precision != "auto":
        return precision
    device = torch.device(device)
    pays = model.cell.bfloat16 and model.cell.bfloat16_pays
    return "bfloat16" if device.type == "cpu" and pays and native_bfloat16(device) else "float32"


def require_cell_precision(precision, cell, what):
    """Raise PipelineError when `precision` (bfloat16, int8) is one the registered `cell` (cells.Cell) has
    no version of: it is refused, never run in float32 instead. `what` names the setting."""
    if precision == "bfloat16" and not cell.bfloat16:
        raise PipelineError(f"{what} is bfloat16, but the {cell.name} cell does not run in bfloat16: use float32")
    if precision == "int8" and not cell.int8:
        raise PipelineError(f"{what} is int8, but the {cell.name} cell has no int8 version: use float32 or bfloat16")


def machine_memory(device):
    """Bytes of memory on `device`: the GPU's own, or the machine's physical memory; None where the platform
    does not say (no os.sysconf on Windows)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def training_memory(model_config, batch_size, seq_len):
    """(bytes, parameters, activation bytes): a lower bound on what training `model_config` takes. Weights,
    gradients and Adam's two moments are 16 bytes a parameter (counted without building the model:
    model.parameter_count); a batch of `batch_size` reviews of `seq_len` tokens keeps, for the backward
    pass, each token's embedding and each recurrent layer's gate pre-activations, state and output."""
    parameters = parameter_count(**model_config.as_dict())
    directions = 2 if model_config.bidirectional else 1
    gates = CELLS[model_config.cell].gates
    per_token = model_config.embed_dim + model_config.num_layers * directions * (gates + 2) * model_config.hidden_dim
    activations = 4 * batch_size * seq_len * per_token
    return 16 * parameters + activations, parameters, activations


def check_memory(name, model_config, batch_size, seq_len, device, processes=1):
    """Raise PipelineError when training architecture `name` cannot fit in `device`'s memory (training_memory,
    times the data-parallel `processes` that share a CPU machine), with the estimate and what to lower."""
    need, parameters, activations = training_memory(model_config, batch_size, seq_len)
    copies = processes if torch.device(device).type == "cpu" else 1
    have = machine_memory(device)
    if have is not None and need * copies > have:
        gib = 2**30
        raise PipelineError(
            f"{name} needs at least {need * copies / gib:,.1f} GiB to train "
            f"({parameters / 1e6:,.1f} million parameters: "
            f"{16 * parameters / gib:,.1f} GiB of weights, gradients and Adam's state; {activations / gib:,.1f} GiB of "
            f"activations for a batch of {batch_size} x {seq_len} tokens"
            f"{f'; {copies} processes' if copies > 1 else ''}), "
            f"but this {'GPU' if torch.device(device).type == 'cuda' else 'machine'} has {have / gib:,.1f} GiB: lower "
            f"{name}.hidden_dim, {name}.num_layers or {name}.batch_size"
        )


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
