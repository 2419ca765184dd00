"""benchmarks/bench_lanes.py: side-by-side trainings against one, on the tiny data."""

import re

from conftest import REPO_ROOT, run_script


def test_a_run_prints_the_cpu_both_paths_and_their_ratio(tiny_data, tmp_path):
    data = tiny_data / "data"
    result = run_script(
        REPO_ROOT / "benchmarks/bench_lanes.py",
        "--arch",
        "gru",
        "--batches",
        "2",
        "--lanes",
        "2",
        "--params",
        tiny_data / "params.yaml",
        "--train",
        data / "split/train.npz",
        "--meta",
        data / "tokens/meta.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cpu: ")
    line = re.search(
        r"gru: one lane x \d+ threads +([\d,]+) tokens/s; 2 lanes x 1 thread +([\d,]+) tokens/s together; "
        r"ratio ([\d.]+)x",
        result.stdout,
    )
    assert line, result.stdout
    one, many, ratio = (float(g.replace(",", "")) for g in line.groups())
    assert one > 0 and many > 0 and abs(many / one - ratio) < 0.01 + 0.01 * ratio


def test_one_lane_is_refused(tiny_data, tmp_path):
    result = run_script(REPO_ROOT / "benchmarks/bench_lanes.py", "--lanes", "1", cwd=tmp_path)
    assert result.returncode != 0 and "at least 2" in result.stderr
