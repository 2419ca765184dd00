"""Benchmark: the training speed of each registered cell (src/imdb_rnn/cells) against PyTorch's fused LSTM.

One layer, one direction, as the classifier builds it (`layer(E, H)`), on random time-major input
[T, B, E] that needs its gradient (as an embedding's output does): each timed iteration is the
forward pass and the backward pass of the sum of the outputs. The fused nn.LSTM of the same width
is measured in the same run, and the cells take turns within each repetition, so that a load that
comes and goes weighs on every cell alike; each figure is the median over the repetitions.

  tokens/s    T * B over the median seconds of one forward + backward
  vs lstm     that over the fused LSTM's (above 1: faster than the fused LSTM)

With --compile, the peephole LSTM also runs with torch.compile of its one step (not of the whole
loop: the step is the same for every t, so it compiles once), against its eager step.

    python benchmarks/bench_cells.py                            # every cell, T=256, B=64, E=H=128
    python benchmarks/bench_cells.py --threads 1 --cells mingru goru
    python benchmarks/bench_cells.py --compile --device cuda
    python benchmarks/bench_cells.py --precision bfloat16       # autocast, as train.precision bfloat16
"""

import argparse
import statistics
import sys
import time

import torch
from machine import describe  # benchmarks/machine.py

from imdb_rnn.cells import CELLS, check_cell, peephole_lstm
from imdb_rnn.pipeline import run_main
from imdb_rnn.runtime import pick_device

BASELINE = "lstm"


def build(name, width, device):
    """CELLS[name]'s module of one layer and direction (a stack cell: a stack of one), on `device`."""
    cell = CELLS[name]
    return (cell.layer(width, width, 1) if cell.stack else cell.layer(width, width)).to(device)


def iteration(layer, x, device, bf16=False):
    """Seconds of one forward + backward of the sum of `layer`'s outputs over x (forward under bfloat16
    autocast with `bf16`, as train.precision bfloat16 runs it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs, _ = layer(x)
    outputs.float().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def time_layers(layers, x, device, warmup, repeats, bf16=False):
    """{label: median seconds}: every layer warmed up, then the layers in turn, `repeats` times."""
    for layer in layers.values():
        for _ in range(warmup):
            iteration(layer, x, device, bf16)
    seconds = {label: [] for label in layers}
    for _ in range(repeats):
        for label, layer in layers.items():
            seconds[label].append(iteration(layer, x, device, bf16))
    return {label: statistics.median(s) for label, s in seconds.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), help="registered cells (default: all)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--steps", type=int, default=256, help="T (default 256)")
    parser.add_argument("--batch", type=int, default=64, help="B (default 64)")
    parser.add_argument("--width", type=int, default=128, help="E = H (default 128)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per cell (default 3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed iterations per cell (default 10)")
    parser.add_argument("--compile", action="store_true", help="also time the peephole LSTM with a compiled step")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bfloat16"),
        help="bfloat16: the forward pass under bfloat16 autocast (default float32)",
    )
    args = parser.parse_args()

    for name in args.cells:
        check_cell(name)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the trainer runs (runtime.configure_cpu)
    device = pick_device(args.device)
    print(describe())
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}")
    print(
        f"one layer forward + backward, T={args.steps}, B={args.batch}, E=H={args.width}, {args.precision} "
        f"on {device}; median of {args.repeats}"
    )

    torch.manual_seed(0)
    names = [BASELINE] + [name for name in args.cells if name != BASELINE]
    layers = {name: build(name, args.width, device) for name in names}
    if args.compile:
        compiled = build("peephole_lstm", args.width, device)
        # the step only, for these shapes: another batch size or width would compile it again
        compiled.step = torch.compile(peephole_lstm.step, dynamic=False, fullgraph=True)
        layers["peephole_lstm, compiled step"] = compiled
        layers.setdefault("peephole_lstm", build("peephole_lstm", args.width, device))
    x = torch.randn(args.steps, args.batch, args.width, device=device, requires_grad=True)
    seconds = time_layers(layers, x, device, args.warmup, args.repeats, args.precision == "bfloat16")

    tokens = args.steps * args.batch
    print(f"{'cell':<30} {'gates':>5} {'tokens/s':>10} {'vs lstm':>8}")
    for label, s in seconds.items():
        gates = CELLS[label.split(",")[0]].gates
        print(f"{label:<30} {gates:>5} {tokens / s:>10,.0f} {seconds[BASELINE] / s:>7.2f}x")
    if args.compile:
        ratio = seconds["peephole_lstm"] / seconds["peephole_lstm, compiled step"]
        print(f"peephole_lstm: the compiled step runs at {ratio:.2f}x the eager step's speed")


if __name__ == "__main__":
    sys.exit(run_main(main))
