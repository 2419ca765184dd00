"""benchmarks/bench_predict.py on the tiny data: both passes timed, lanes give float32's answers."""

import json

from conftest import REPO_ROOT, run_script


def test_a_run_times_the_second_pass_and_lanes_keep_float32s_probabilities(tiny_data, tmp_path):
    data = tiny_data / "data"
    result = run_script(REPO_ROOT / "benchmarks/bench_predict.py", "--model", tmp_path / "none.pt", "--arch", "bilstm",
                        "--params", tiny_data / "params.yaml", "--vocab", data / "vocab/vocab.txt",
                        "--ingested", data / "ingest/reviews.parquet", "--limit", "60", "--precisions", "float32",
                        "--threads", "2", "--lanes", "1,2", "--out", tmp_path / "results.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "NO CHECKPOINT" in result.stdout and "1st pass" in result.stdout and "cpu: " in result.stdout
    rows = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [row["lanes"] for row in rows] == [1, 2]
    for row in rows:
        assert row["reviews_per_second"] > 0 and row["first_pass_reviews_per_second"] > 0
        assert row["max_probability_change"] <= 1e-5  # two lanes against one: the same float32 answers
