"""benchmarks/roofline.py: the FLOP count it divides by, and a run on the tiny data."""

import sys

import pytest
from conftest import REPO_ROOT, repo_params, run_script

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from roofline import category, forward_flops_per_token  # noqa: E402


def test_flops_per_token_are_the_issues_figures():
    params = repo_params()
    arch = lambda name: {**params["arch_defaults"], **params[name]}  # noqa: E731
    # bilstm about 1.57 MFLOP a token trained (forward + backward, both directions), gru 0.59
    assert 3 * forward_flops_per_token(arch("bilstm")) == 1_572_864
    assert 3 * forward_flops_per_token(arch("gru")) == 589_824
    # a second layer reads both directions of the first: input 2 x 96
    assert forward_flops_per_token(arch("stacked_lstm")) == 2 * 2 * 4 * 96 * (128 + 96) + 2 * 2 * 4 * 96 * (192 + 96)


def test_profiled_ops_fall_into_their_groups():
    assert category("aten::mkldnn_rnn_layer") == category("MkldnnRnnLayerBackward0") == "recurrent kernels"
    assert category("aten::gru") == category("aten::lstm") == "recurrent kernels"
    assert category("aten::embedding_dense_backward") == category("aten::_fused_adam_") == "embedding + optimiser"
    assert category("aten::bernoulli_") == "dropout masks"
    assert category("aten::addmm") == "other ops"


@pytest.mark.precision
def test_a_run_prints_the_peak_every_path_and_where_time_goes(tiny_data, tmp_path):
    """Every path the CPU runs natively; bfloat16 where it is only emulated is named and skipped, not timed
    (minutes of emulation on an AVX2 CPU): the 60 s bound holds on either."""
    from imdb_rnn.runtime import native_bfloat16

    data = tiny_data / "data"
    result = run_script(
        REPO_ROOT / "benchmarks/roofline.py",
        "--arch",
        "gru",
        "--batches",
        "2",
        "--threads",
        "1",
        "--params",
        tiny_data / "params.yaml",
        "--train",
        data / "split/train.npz",
        "--val",
        data / "split/val.npz",
        "--meta",
        data / "tokens/meta.json",
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("cpu: ") and "matmul peak" in out and "GFLOP/s" in out
    for line in ("train float32 ", "train float32, batch x2", "score float32", "recurrent kernels", "validation"):
        assert line in out, out
    native = native_bfloat16("cpu")
    assert ("train bfloat16 " in out and "train bfloat16, batch x2" in out) == native, out
    assert ("bfloat16 paths not measured: " in out) == (not native), out
