"""What a benchmark ran on: CPU model, core count and the instruction sets the fast kernels use.

Every benchmark prints this line first: its figures are only comparable on the same CPU features
(AMX and AVX512-BF16 decide bfloat16 speed, AVX-512 the float32 kernels).
"""

import os
import platform
from pathlib import Path

import torch

from imdb_rnn.pipeline import usable_cores
from imdb_rnn.runtime import native_bfloat16


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe():
    """One line: CPU model, cores, the features PyTorch detects, torch version and threads."""
    features = {
        "AMX": torch.cpu._is_amx_tile_supported(),
        "AVX512-BF16": torch.cpu._is_avx512_bf16_supported(),
        "AVX-512": torch.cpu._is_avx512_supported(),
        "AVX2": torch.cpu._is_avx2_supported(),
    }
    listed = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in features.items())
    usable, total = usable_cores(), os.cpu_count()
    cores = (
        f"{total} cores" if usable == total else f"{usable} of {total} cores usable"
    )  # a pinned or cgroup-limited process
    # the flags say what the CPU has; the kernels may be held below them (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY)
    return (
        f"cpu: {cpu_model()}, {cores}; {listed}; kernels: {torch.backends.cpu.get_cpu_capability()}, "
        f"native bfloat16 {'yes' if native_bfloat16('cpu') else 'no'}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    print(describe())
