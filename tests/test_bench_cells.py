"""benchmarks/bench_cells.py: every registered cell timed against the fused LSTM in one run, and told by name."""

import re
import subprocess
import sys

from conftest import REPO_ROOT, script_env

from imdb_rnn.cells import CELLS

BENCH = REPO_ROOT / "benchmarks" / "bench_cells.py"


def test_every_cell_gets_a_ratio_to_the_fused_lstm_and_an_unknown_one_is_one_line():
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--threads",
            "1",
            "--steps",
            "8",
            "--batch",
            "2",
            "--width",
            "4",
            "--warmup",
            "1",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        env=script_env(),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cpu: ")  # what it ran on, first
    rows = {m[1]: float(m[2]) for m in re.finditer(r"^(\w+) +\d+ +[\d,]+ +([\d.]+)x$", result.stdout, re.M)}
    assert set(rows) == set(CELLS) and rows["lstm"] == 1.0
    unknown = subprocess.run(
        [sys.executable, str(BENCH), "--cells", "lstmm"], capture_output=True, text=True, env=script_env()
    )
    assert unknown.returncode == 1 and unknown.stderr.startswith(
        "error: unknown cell 'lstmm': the known cells are rnn, lstm"
    )
