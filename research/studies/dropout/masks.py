"""What a dropout mask costs on this CPU: torch's bernoulli_ (nn.Dropout's draw) against 16-bit random
integers taken four to each 64-bit torch.randint draw, for a bilstm embedding output of the mean
training batch ([216, 64, 128]: steps, reviews, features), at 1 and 2 threads; mean of 20 after one untimed.

    python studies/dropout/masks.py
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from machine import describe  # noqa: E402


def ms(work, repeats=20):
    work()
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - start) / repeats * 1e3


x = torch.randn(216, 64, 128)
print(describe())
for threads in (1, 2):
    torch.set_num_threads(threads)
    bernoulli = ms(lambda: torch.empty_like(x).bernoulli_(0.7))
    bits = ms(lambda: torch.randint(-2 ** 63, 2 ** 63 - 1, (x.numel() // 4,), dtype=torch.int64).view(torch.int16) >= -13107)
    print(f"{threads} thread(s): bernoulli_ {bernoulli:.1f} ms, 16-bit integers {bits:.1f} ms ({bernoulli / bits:.1f}x)")
