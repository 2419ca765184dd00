"""benchmarks/gpu_path.py, the GPU path's script, runs on the CPU too (where no GPU is at hand)."""

import re

from conftest import REPO_ROOT, run_script


def test_the_gpu_path_trains_one_epoch_and_scores_the_test_set_on_the_cpu(tiny_data, tmp_path):
    result = run_script(
        REPO_ROOT / "benchmarks/gpu_path.py",
        "--arch",
        "gru",
        "--device",
        "cpu",
        "--data",
        tiny_data / "data",
        "--params",
        tiny_data / "params.yaml",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cpu: ") and "AMX" in lines[0]
    summary = re.search(
        r"gru on cpu, float32: (\d+) training reviews.* s per epoch, (\d+) training tokens/s; validation accuracy "
        r"([\d.]+); test: (\d+) reviews in [\d.]+ s, (\d+) reviews/s, accuracy ([\d.]+)",
        lines[-1],
    )
    assert summary, result.stdout
    assert int(summary[4]) == 120 and int(summary[2]) > 0 and int(summary[5]) > 0  # every tiny test review


def test_a_missing_input_is_one_line(tmp_path):
    result = run_script(
        REPO_ROOT / "benchmarks/gpu_path.py",
        "--device",
        "cpu",
        "--data",
        tmp_path,
        "--params",
        REPO_ROOT / "params.yaml",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "meta.json" in result.stderr, result.stderr
