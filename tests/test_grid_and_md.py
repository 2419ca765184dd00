"""The two 2-D recurrences: the Grid LSTM over time x depth and the multi-dimensional LSTM over a review's
rows, each against its paper's equations computed cell by cell, and tied to the models they generalise."""

import pytest
import torch
from conftest import REPO_ROOT
from torch import nn

from imdb_rnn.cells.grid_lstm import GridLSTM
from imdb_rnn.cells.mdlstm import MDLSTM
from imdb_rnn.config import arch_settings
from imdb_rnn.model import RecurrentClassifier
from imdb_rnn.params import read_params
from imdb_rnn.pipeline import PipelineError

torch.set_default_dtype(torch.float32)
F64 = torch.float64


def lstm_step(gates, memory):
    """The LSTM transform the Grid LSTM applies along each dimension: gates [i; f; g; o] (nn.LSTM's order)."""
    i, f, g, o = gates.chunk(4, dim=-1)
    memory = torch.sigmoid(f) * memory + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(memory), memory


def grid_reference(grid, x, h0, m0):
    """Kalchbrenner et al.'s 2-D Grid LSTM block by block, in plain loops over layers and steps."""
    steps, layers = x.size(0), len(grid.time)
    h = [[None] * (steps + 1) for _ in range(layers)]
    m = [[None] * (steps + 1) for _ in range(layers)]
    for layer in range(layers):
        h[layer][0], m[layer][0] = h0[layer], m0[layer]
    top = []
    for t in range(steps):
        d, n = grid.project(x[t]), torch.zeros_like(h0[0])  # the bottom layer's depth input: P x_t, memory 0
        for layer in range(layers):
            time, depth = grid.time[layer], grid.depth[layer]
            w_time = torch.cat([time.weight_ih_l0, time.weight_hh_l0], dim=1)
            both = torch.cat([d, h[layer][t]], dim=-1)  # H = [d_{l-1,t}; h_{l,t-1}]
            h[layer][t + 1], m[layer][t + 1] = lstm_step(
                both @ w_time.t() + time.bias_ih_l0 + time.bias_hh_l0, m[layer][t]
            )
            d, n = lstm_step(depth(both), n)
        top.append(d)
    return (
        torch.stack(top),
        torch.stack([h[layer][steps] for layer in range(layers)]),
        torch.stack([m[layer][steps] for layer in range(layers)]),
    )


def test_grid_lstm_is_its_papers_equations_to_1e_10_and_passes_gradcheck():
    torch.manual_seed(0)
    grid = GridLSTM(5, 3, 3).to(F64)
    x = torch.randn(6, 2, 5, dtype=F64, requires_grad=True)
    h0, m0 = torch.randn(3, 2, 3, dtype=F64), torch.randn(3, 2, 3, dtype=F64)
    out, (last, h, m) = grid(x, (torch.zeros(3, 2, 3, dtype=F64), h0, m0))
    ref_out, ref_h, ref_m = grid_reference(grid, x, h0, m0)
    for ours, theirs in ((out, ref_out), (h, ref_h), (m, ref_m), (last[-1], ref_out[-1])):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    h0.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, h0: grid(x, (None, h0, m0))[0], (x, h0))


def test_grid_lstm_passing_the_temporal_output_up_is_a_stacked_lstm():
    torch.manual_seed(1)
    grid = GridLSTM(5, 4, 3, depth="identity")
    stacked = nn.LSTM(4, 4, num_layers=3)
    stacked.load_state_dict(
        {
            f"{name[:-1]}{layer}": getattr(grid.time[layer], name)
            for layer in range(3)
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        }
    )
    x = torch.randn(9, 3, 5)
    out, (last, h, m) = grid(x)
    expected, (h_n, c_n) = stacked(grid.project(x))  # the stacked LSTM over the projected input
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_n, rtol=0, atol=1e-6)
    torch.testing.assert_close(m, c_n, rtol=0, atol=1e-6)
    # and the real grid is not one: its cells along depth change the output
    assert not torch.allclose(GridLSTM(5, 4, 3).eval()(x)[0], out)


def md_reference(md, x, row_len):
    """Graves et al.'s 2-D MD-LSTM cell by cell, in reading order, from the weights' blocks."""
    hidden = md.hidden_size
    w, u_above, u_left = md.weight_ih, md.weight_hh[:, :hidden], md.weight_hh[:, hidden:]
    h, c, outputs = {}, {}, []
    zero = x.new_zeros(x.size(1), hidden)
    for t in range(x.size(0)):
        r, col = divmod(t, row_len)
        h1, c1 = h.get((r - 1, col), zero), c.get((r - 1, col), zero)
        h2, c2 = h.get((r, col - 1), zero), c.get((r, col - 1), zero)
        i, f1, f2, g, o = (x[t] @ w.t() + h1 @ u_above.t() + h2 @ u_left.t() + md.bias).chunk(5, dim=-1)
        c[r, col] = torch.sigmoid(f1) * c1 + torch.sigmoid(f2) * c2 + torch.sigmoid(i) * torch.tanh(g)
        h[r, col] = torch.sigmoid(o) * torch.tanh(c[r, col])
        outputs.append(h[r, col])
    return torch.stack(outputs), c[r, col]


@pytest.mark.parametrize("steps, row_len", [(11, 4), (12, 4), (5, 8), (9, 1), (7, 7)])
def test_mdlstm_is_its_papers_equations_to_1e_10_and_passes_gradcheck(steps, row_len):
    torch.manual_seed(steps)
    md = MDLSTM(3, 2, row_len=row_len).to(F64)
    x = torch.randn(steps, 2, 3, dtype=F64, requires_grad=True)
    out, (h, c) = md(x)
    ref_out, ref_c = md_reference(md, x, row_len)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    torch.testing.assert_close(h[0], ref_out[-1], rtol=0, atol=1e-10)
    torch.testing.assert_close(c[0], ref_c, rtol=0, atol=1e-10)
    assert torch.autograd.gradcheck(lambda x: md(x)[0], (x,))


def test_mdlstm_on_a_single_row_is_a_1d_lstm_without_the_second_axis():
    torch.manual_seed(2)
    md = MDLSTM(5, 4, row_len=16)
    hidden = 4
    rows = lambda t: torch.cat(
        [t[:hidden], t[2 * hidden :]]
    )  # i, f² (from the left), g, o: the cell above never exists
    lstm = nn.LSTM(5, 4)
    lstm.load_state_dict(
        {
            "weight_ih_l0": rows(md.weight_ih),
            "weight_hh_l0": rows(md.weight_hh[:, hidden:]),
            "bias_ih_l0": rows(md.bias),
            "bias_hh_l0": torch.zeros(4 * hidden),
        }
    )
    x = torch.randn(16, 3, 5)
    out, (h, c) = md(x)
    expected, (h_n, c_n) = lstm(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(c, c_n, rtol=0, atol=1e-6)
    # past one row the second axis matters: rows of 4 give another output from the same weights
    md.row_len = 4
    assert not torch.allclose(md(x)[0][4:], expected[4:], atol=1e-3)


def test_mdlstm_scans_a_whole_diagonal_at_a_time():
    """rows + row_len - 1 sequential steps, not one per token: counted as the recurrent products it makes."""
    md = MDLSTM(3, 2, row_len=32)
    calls = []
    original = torch.Tensor.__matmul__

    def counting(a, b):
        calls.append(1)
        return original(a, b)

    torch.Tensor.__matmul__ = counting
    try:
        md(torch.randn(512, 2, 3))
    finally:
        torch.Tensor.__matmul__ = original
    assert len(calls) == 512 // 32 + 32 - 1 == 47


@pytest.mark.parametrize(
    "cell, changes, message",
    [
        (
            "grid_lstm",
            {"num_layers": 1},
            "parameter arch.num_layers is 1, but a grid_lstm needs at least 2: its cells along "
            "depth connect a layer to the one below it",
        ),
        (
            "mdlstm",
            {"pooling": "last"},
            "parameter arch.pooling is last, but the mdlstm cell does not carry its state from "
            "one span of steps to the next, which last pooling needs: use max, mean or attention",
        ),
        ("mdlstm", {"row_len": 0}, "parameter arch.row_len must be >= 1, got 0"),
        ("lstm", {"row_len": 8}, "unknown parameter arch.row_len: known keys are "),
    ],
)
def test_settings_that_mean_nothing_for_the_cell_are_one_line(tmp_path, cell, changes, message):
    params = read_params(REPO_ROOT / "params.yaml")
    params["architectures"] = ["arch"]
    params["arch"] = {
        "cell": cell,
        "hidden_dim": 8,
        "lr": 0.002,
        "num_layers": 2,
        **({"row_len": 4} if cell == "mdlstm" else {}),
        **changes,
    }
    (tmp_path / "params.yaml").write_text(__import__("yaml").safe_dump(params))
    with pytest.raises(PipelineError) as refused:
        arch_settings(tmp_path / "params.yaml", "arch")
    assert str(refused.value).startswith(message)


def test_an_mdlstm_classifier_keeps_its_row_length_in_the_checkpoint():
    model = RecurrentClassifier(30, 8, 4, "mdlstm", bidirectional=True, pooling="max", options={"row_len": 5})
    assert all(layer.row_len == 5 for layer in model.layers[0])
    with pytest.raises(TypeError):
        RecurrentClassifier(30, 8, 4, "lstm", options={"row_len": 5})  # another cell's option is no option of lstm's


def test_mdlstm_refuses_to_continue_from_a_state():
    md = MDLSTM(3, 2, row_len=4)
    x = torch.randn(6, 2, 3)
    _, state = md(x)
    with pytest.raises(ValueError, match="an mdlstm layer starts from zeros: it cannot continue from a state"):
        md(x, state)
