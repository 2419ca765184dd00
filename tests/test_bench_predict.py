"""benchmarks/bench_predict.py on the tiny data: both passes timed, lanes give float32's answers."""

import json
import re
import sys

from conftest import REPO_ROOT, run_script

from imdb_rnn.config import arch_settings

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from roofline import forward_flops_per_token  # noqa: E402


def test_a_run_times_the_second_pass_and_lanes_keep_float32s_probabilities(tiny_data, tmp_path):
    data = tiny_data / "data"
    result = run_script(
        REPO_ROOT / "benchmarks/bench_predict.py",
        "--model",
        tmp_path / "none.pt",
        "--arch",
        "bilstm",
        "--params",
        tiny_data / "params.yaml",
        "--vocab",
        data / "vocab/vocab.txt",
        "--ingested",
        data / "ingest/reviews.parquet",
        "--limit",
        "60",
        "--precisions",
        "float32",
        "--threads",
        "2",
        "--lanes",
        "1,2",
        "--out",
        tmp_path / "results.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "NO CHECKPOINT" in result.stdout and "1st pass" in result.stdout and "cpu: " in result.stdout
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [row["lanes"] for row in rows] == [1, 2]
    for row in rows:
        assert row["reviews_per_second"] > 0 and row["first_pass_reviews_per_second"] > 0
        assert row["max_probability_change"] <= 1e-5  # two lanes against one: the same float32 answers
    # the float32 limit line: the ceiling the measured peak allows and the share the target needs agree
    line = next(line for line in result.stdout.splitlines() if line.startswith("float32 against this CPU's limit"))
    ceiling, need = re.search(
        r"at the peak, ([\d,]+) reviews/s; 2,000 reviews/s would need (\d+)% of it", line
    ).groups()
    assert abs(int(need) - 100 * 2000 / int(ceiling.replace(",", ""))) <= 1, line
    tokens = float(re.search(r"([\d.]+) tokens a review", line)[1])
    assert all(abs(tokens - row["tokens_per_second"] / row["reviews_per_second"]) < 0.2 for row in rows), line
    flops = forward_flops_per_token(arch_settings(tiny_data / "params.yaml", "bilstm")[0])
    assert f"{flops:,} FLOP a token" in line
    best = max(rows, key=lambda row: row["reviews_per_second"])
    share = int(re.search(r"GFLOP/s is (\d+)% of the float32 torch.mm peak", line)[1])
    assert abs(share - 100 * best["reviews_per_second"] / int(ceiling.replace(",", ""))) <= 1, line
