"""The registered cells: each new one against its paper's equations written out step by step, against
the model it extends and against outside implementations; every cell against the layer contract
(src/imdb_rnn/cells/registry.py), so that a cell added later is checked without a line here."""

import copy
import dataclasses
import warnings

import pytest
import torch
from conftest import needs_native_bfloat16
from torch import nn

from imdb_rnn.cells import CELLS
from imdb_rnn.cells.goru import GORU
from imdb_rnn.cells.mingru import MinGRU
from imdb_rnn.cells.peephole_lstm import PeepholeLSTM
from imdb_rnn.model import RecurrentClassifier, parameter_count
from imdb_rnn.predict import apply_precision

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: more threads only add overhead

T, B, D, H = 5, 3, 4, 3  # steps, batch, input and hidden width of the exactness tests
NEW = ("peephole_lstm", "goru", "mingru")


def build(name, input_size=D, hidden_size=H):
    """CELLS[name]'s layer as the classifier builds it: one layer, or a stack of two for a stack cell."""
    cell = CELLS[name]
    return cell.layer(input_size, hidden_size, 2) if cell.stack else cell.layer(input_size, hidden_size)


def randomized(name, seed=0, dtype=torch.float64, input_size=D, hidden_size=H):
    """CELLS[name]'s layer in `dtype` with every parameter moved off its start (peepholes and biases non-zero)."""
    torch.manual_seed(seed)
    layer = build(name, input_size, hidden_size).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return layer


def state_tensors(state):
    return state if isinstance(state, tuple) else (state,)


def like(state, make):
    """A state of the same structure as `state`, each tensor made by make(tensor)."""
    return tuple(make(s) for s in state) if isinstance(state, tuple) else make(state)


def random_state(layer, batch, input_size=D, seed=1):
    """A non-zero incoming state of the structure the layer returns (one tensor, or a tuple of them); None for a
    cell that starts from zeros every call (cells.Cell.carries_state)."""
    if not next(cell for cell in CELLS.values() if isinstance(layer, cell.layer)).carries_state:
        return None
    x = torch.zeros(1, batch, input_size, dtype=next(layer.parameters()).dtype)
    generator = torch.Generator().manual_seed(seed)
    # positive: minGRU's log-space reference takes the log of its state
    return like(layer(x)[1], lambda s: 0.2 + 0.5 * torch.rand(s.shape, generator=generator, dtype=s.dtype))


# --- the papers' equations, one step at a time -------------------------------------------------------


def peephole_reference(layer, x, h, c):
    W_i, W_f, W_g, W_o = layer.weight_ih_l0.chunk(4)
    R_i, R_f, R_g, R_o = layer.weight_hh_l0.chunk(4)
    b_i, b_f, b_g, b_o = (layer.bias_ih_l0 + layer.bias_hh_l0).chunk(4)
    p_i, p_f, p_o = layer.weight_ch
    outputs = []
    for t in range(x.size(0)):
        i = torch.sigmoid(x[t] @ W_i.T + h @ R_i.T + p_i * c + b_i)
        f = torch.sigmoid(x[t] @ W_f.T + h @ R_f.T + p_f * c + b_f)
        g = torch.tanh(x[t] @ W_g.T + h @ R_g.T + b_g)
        c = f * c + i * g
        o = torch.sigmoid(x[t] @ W_o.T + h @ R_o.T + p_o * c + b_o)
        h = o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs), (h, c)


def goru_reference(layer, x, h):
    W_r, W_z, W_h = layer.weight_ih.chunk(3)
    R_r, R_z = layer.weight_hh.chunk(2)
    b_r, b_z = layer.bias.chunk(2)
    U, b_h = layer.recurrent.weight, layer.bias_modrelu
    outputs = []
    for t in range(x.size(0)):
        r = torch.sigmoid(x[t] @ W_r.T + h @ R_r.T + b_r)
        z = torch.sigmoid(x[t] @ W_z.T + h @ R_z.T + b_z)
        a = x[t] @ W_h.T + r * (h @ U.T)
        candidate = torch.sign(a) * torch.relu(torch.abs(a) + b_h)
        h = z * h + (1 - z) * candidate
        outputs.append(h)
    return torch.stack(outputs), (h,)


def mingru_reference(layer, x, h):
    W_h, W_z = layer.linear.weight.chunk(2)
    b_h, b_z = layer.linear.bias.chunk(2)
    outputs = []
    for t in range(x.size(0)):
        z = torch.sigmoid(x[t] @ W_z.T + b_z)
        a = x[t] @ W_h.T + b_h
        candidate = torch.where(a >= 0, a + 0.5, torch.sigmoid(a))
        h = (1 - z) * h + z * candidate
        outputs.append(h)
    return torch.stack(outputs), (h,)


REFERENCES = {"peephole_lstm": peephole_reference, "goru": goru_reference, "mingru": mingru_reference}


@pytest.mark.parametrize("name", NEW)
def test_cell_is_its_papers_equations(name):
    layer = randomized(name)
    x = torch.randn(T, B, D, dtype=torch.float64)
    state = random_state(layer, B)
    with torch.no_grad():
        outputs, final = layer(x, state)
        expected, expected_final = REFERENCES[name](layer, x, *(s[0] for s in state_tensors(state)))
    assert outputs.dtype == torch.float64
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-10)
    for got, want in zip(state_tensors(final), expected_final, strict=True):
        torch.testing.assert_close(got[0], want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", NEW)
def test_gradcheck(name):
    layer = randomized(name)
    params = dict(layer.named_parameters())  # GORU's U: its parametrization's original, so U stays computed
    x = torch.randn(T, B, D, dtype=torch.float64, requires_grad=True)
    state = [s.requires_grad_() for s in state_tensors(random_state(layer, B))]

    def run(x, *tensors):
        values = dict(zip(params, tensors[len(state) :]))
        carried = tuple(tensors[: len(state)]) if len(state) > 1 else tensors[0]
        outputs, final = torch.func.functional_call(layer, values, (x, carried))
        return outputs, *state_tensors(final)

    assert torch.autograd.gradcheck(run, (x, *state, *params.values()))


# --- the models each cell extends --------------------------------------------------------------------


def test_peephole_lstm_without_peepholes_is_nn_lstm():
    torch.manual_seed(0)
    reference = nn.LSTM(D, H)
    layer = PeepholeLSTM(D, H)
    assert torch.equal(layer.weight_ch, torch.zeros(3, H))  # a fresh cell starts as the plain LSTM
    missing, unexpected = layer.load_state_dict(reference.state_dict(), strict=False)
    assert (missing, unexpected) == (["weight_ch"], [])  # nn.LSTM's weights load as they are
    x = torch.randn(7, B, D, requires_grad=True)
    state = (torch.randn(1, B, H), torch.randn(1, B, H))
    outputs, (h, c) = layer(x, state)
    expected, (h_ref, c_ref) = reference(x, state)
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=1e-6)
    (grad,) = torch.autograd.grad(outputs.sum(), x)
    (grad_ref,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-6)


def test_goru_recurrent_matrix_stays_orthogonal_under_adam():
    torch.manual_seed(0)
    layer = GORU(D, 6)
    identity = torch.eye(6)
    start = layer.recurrent.weight.detach().clone()
    torch.testing.assert_close(start.T @ start, identity, rtol=0, atol=1e-5)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    x, target = torch.randn(8, B, D), torch.randn(8, B, 6)
    for _ in range(20):
        outputs, _ = layer(x)
        loss = (outputs - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    U = layer.recurrent.weight.detach()
    assert (U - start).norm() > 0.1  # the steps moved U ...
    assert (U.T @ U - identity).norm() < 1e-5  # ... along the orthogonal matrices


def test_mingru_loop_is_the_papers_parallel_form():
    # h_t = (prod_{s<=t} a_s) h_0 + sum_{k<=t} (prod_{k<s<=t} a_s) b_k, with a = 1 - z and b = z * g(h~)
    # (the paper's parallel scan, here by cumulative products in float64): the same numbers as the loop
    layer = randomized("mingru")
    x = torch.randn(T, B, D, dtype=torch.float64)
    h0 = random_state(layer, B)
    hidden_pre, gate_pre = layer.linear(x).chunk(2, dim=-1)
    z = torch.sigmoid(gate_pre)
    a, b = 1 - z, z * torch.where(hidden_pre >= 0, hidden_pre + 0.5, torch.sigmoid(hidden_pre))
    prefix = torch.cumprod(a, dim=0)
    expected = prefix * (h0 + torch.cumsum(b / prefix, dim=0))
    with torch.no_grad():
        outputs, _ = layer(x, h0)
    torch.testing.assert_close(outputs, expected.detach(), rtol=0, atol=1e-10)


def test_mingru_loop_is_its_step_by_step_definition():
    # one call per step, the state carried by hand: the definition the loop must keep
    layer = randomized("mingru")
    x = torch.randn(T, B, D, dtype=torch.float64)
    state = random_state(layer, B)
    with torch.no_grad():
        outputs, final = layer(x, state)
        steps = []
        for t in range(T):
            out, state = layer(x[t : t + 1], state)
            steps.append(out[0])
    torch.testing.assert_close(outputs, torch.stack(steps), rtol=0, atol=1e-12)
    torch.testing.assert_close(final, state, rtol=0, atol=1e-12)


# --- outside implementations (test-only dependencies, pinned in requirements-dev.txt) -------------------


def test_peephole_lstm_matches_torchrecurrent():
    torchrecurrent = pytest.importorskip(
        "torchrecurrent", reason="not installed (requirements-test.txt pins it; make test installs it)"
    )
    layer = randomized("peephole_lstm", dtype=torch.float32)
    theirs = torchrecurrent.PeepholeLSTMCell(D, H)
    with torch.no_grad():
        theirs.weight_ih.copy_(layer.weight_ih_l0)
        theirs.weight_hh.copy_(layer.weight_hh_l0)
        theirs.weight_ph.copy_(layer.weight_ch.reshape(-1))  # p_i, p_f, p_o, one after the other
        theirs.bias_ih.copy_(layer.bias_ih_l0)
        theirs.bias_hh.copy_(layer.bias_hh_l0)
        x = torch.randn(T, B, D)
        h, c = torch.randn(B, H), torch.randn(B, H)
        outputs, (h_n, c_n) = layer(x, (h[None], c[None]))
        expected = []
        for t in range(T):
            h, c = theirs(x[t], (h, c))
            expected.append(h)
    torch.testing.assert_close(outputs, torch.stack(expected), rtol=0, atol=1e-6)
    torch.testing.assert_close(h_n[0], h, rtol=0, atol=1e-6)
    torch.testing.assert_close(c_n[0], c, rtol=0, atol=1e-6)


def test_mingru_matches_mingru_pytorch():
    mingru_pytorch = pytest.importorskip(
        "minGRU_pytorch", reason="mingru-pytorch not installed (requirements-test.txt pins it; make test installs it)"
    )
    layer = randomized("mingru", dtype=torch.float32, hidden_size=D)  # theirs keeps the width (expansion 1)
    theirs = mingru_pytorch.minGRU(D)
    with torch.no_grad():
        layer.linear.bias.zero_()  # theirs has no bias
        theirs.to_hidden_and_gate.weight.copy_(layer.linear.weight)  # the same rows: hidden, then gate
        x = torch.randn(T, B, D)
        h0 = random_state(layer, B)  # positive: their parallel form takes its log
        outputs, final = layer(x, h0)
        # their parallel (log-space scan) and sequential forms, batch-first
        parallel, last = theirs(x.transpose(0, 1), h0.transpose(0, 1), return_next_prev_hidden=True)
        h, sequential = h0.transpose(0, 1), []
        for t in range(T):
            out, h = theirs(x[t][:, None], h, return_next_prev_hidden=True)
            sequential.append(out[:, 0])
    torch.testing.assert_close(outputs, parallel.transpose(0, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(final, last.transpose(0, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(outputs, torch.stack(sequential), rtol=0, atol=1e-6)


# --- the layer contract, for every registered cell ---------------------------------------------------


@pytest.mark.parametrize("name", list(CELLS))
def test_contract_shapes_and_zero_state(name):
    layer = randomized(name)
    x = torch.randn(T, B, D, dtype=torch.float64)
    with torch.no_grad():
        outputs, state = layer(x)
        zeros = like(state, torch.zeros_like) if CELLS[name].carries_state else None
        again, _ = layer(x, zeros)  # None means zeros
    assert outputs.shape == (T, B, H) and outputs.dtype == torch.float64
    depth = 2 if CELLS[name].stack else 1
    for s in state_tensors(state):
        assert s.shape == (depth, B, H) and s.dtype == torch.float64
    # the first state tensor holds the last step's output (of the top layer, for a stack)
    torch.testing.assert_close(state_tensors(state)[0][-1], outputs[-1], rtol=0, atol=0)
    torch.testing.assert_close(again, outputs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(CELLS))
def test_contract_causal(name):
    layer = randomized(name)
    x = torch.randn(T, B, D, dtype=torch.float64)
    state = random_state(layer, B)
    for t in range(T - 1):
        changed = x.clone()
        changed[t + 1 :] = torch.randn(T - t - 1, B, D, dtype=torch.float64)
        with torch.no_grad():
            outputs, _ = layer(x, state)
            after, _ = layer(changed, state)
        torch.testing.assert_close(after[: t + 1], outputs[: t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(after[t + 1 :], outputs[t + 1 :])  # the changed steps do reach the outputs


@pytest.mark.parametrize("name", [name for name, cell in CELLS.items() if cell.carries_state])
def test_contract_spans_carry_the_state(name):
    layer = randomized(name)
    x = torch.randn(T, B, D, dtype=torch.float64)
    state = random_state(layer, B)
    with torch.no_grad():
        whole, final = layer(x, state)
        for k in (1, 3):
            head, carried = layer(x[:k], state)
            tail, end = layer(x[k:], carried)
            torch.testing.assert_close(torch.cat([head, tail]), whole, rtol=0, atol=1e-10)
            for got, want in zip(state_tensors(end), state_tensors(final), strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(CELLS))
def test_contract_batch_columns_independent(name):
    layer = randomized(name)
    x = torch.randn(T, B, D, dtype=torch.float64)
    state = random_state(layer, B)
    with torch.no_grad():
        together, final = layer(x, state)
        for j in range(B):
            alone, end = layer(x[:, j : j + 1], None if state is None else like(state, lambda s: s[:, j : j + 1]))
            torch.testing.assert_close(alone, together[:, j : j + 1], rtol=0, atol=1e-10)
            for got, want in zip(state_tensors(end), state_tensors(final), strict=True):
                torch.testing.assert_close(got, want[:, j : j + 1], rtol=0, atol=1e-10)
        others = x.clone()
        others[:, 1:] = torch.randn(T, B - 1, D, dtype=torch.float64)
        changed, _ = layer(others, state)
    torch.testing.assert_close(changed[:, :1], together[:, :1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(CELLS))
def test_contract_builds_on_the_meta_device(name):
    with torch.device("meta"):
        layer = build(name, 8, 8)
    assert all(t.is_meta for t in layer.state_dict().values())
    real = build(name, 8, 8)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    config = dict(
        vocab_size=20, embed_dim=8, hidden_dim=8, cell=name, num_layers=2, bidirectional=CELLS[name].bidirectional
    )
    assert parameter_count(**config) == sum(t.numel() for t in RecurrentClassifier(**config).state_dict().values())


@pytest.mark.parametrize("name", list(CELLS))
def test_classifier_with_the_cell_is_exact_under_padding(name):
    # `last` pooling runs the cell over spans with the state carried and sliced (model.run_spans)
    torch.manual_seed(0)
    cell = CELLS[name]
    model = RecurrentClassifier(
        20,
        embed_dim=6,
        hidden_dim=5,
        cell=name,
        num_layers=2,
        bidirectional=cell.bidirectional,
        pooling="last" if cell.carries_state else "max",
    )
    model = model.double().eval()
    lengths = torch.tensor([6, 2, 9, 1, 6])
    ids = torch.randint(1, 20, (len(lengths), 9))
    ids[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    with torch.no_grad():
        together = model(ids, lengths)
        alone = torch.cat([model(ids[i : i + 1, : lengths[i]], lengths[i : i + 1]) for i in range(len(lengths))])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-10)


# --- precisions: what the registry promises ----------------------------------------------------------


@pytest.mark.precision
# elsewhere the product refuses bfloat16 before any cell runs (tested in test_train, test_predict)
@needs_native_bfloat16
@pytest.mark.parametrize("name", [name for name, cell in CELLS.items() if cell.bfloat16])
def test_bfloat16_cells_run_in_bfloat16(name):
    torch.manual_seed(0)
    layer = build(name, 8, 8)
    x = torch.randn(T, B, 8)
    with torch.no_grad():
        expected, _ = layer(x)
        # imdb-predict's bfloat16 weights
        outputs, _ = copy.deepcopy(layer).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert outputs.dtype == torch.bfloat16
    torch.testing.assert_close(outputs.float(), expected, rtol=0, atol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # training's autocast, backward included
        autocast, _ = layer(x.requires_grad_())
    autocast.float().sum().backward()
    torch.testing.assert_close(autocast.float(), expected, rtol=0, atol=0.05)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.precision
@pytest.mark.parametrize("name", [name for name, cell in CELLS.items() if cell.int8])
def test_int8_cells_quantize(name):
    torch.manual_seed(0)
    model = RecurrentClassifier(20, embed_dim=8, hidden_dim=8, cell=name, pooling="max").eval()
    ids, lengths = torch.randint(1, 20, (4, 9)), torch.tensor([9, 7, 4, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = apply_precision(model, "int8")
    converted = [m for m in quantized.layers.modules() if isinstance(m, CELLS[name].int8)]
    assert not converted  # every float module the registry names became its int8 version
    with torch.no_grad():
        torch.testing.assert_close(quantized(ids, lengths), model(ids, lengths), rtol=0, atol=0.05)


# --- each new cell learns -----------------------------------------------------------------------------


def marker_reviews(n=128, vocab=30, seed=0):
    """(ids [n, 12] left-aligned, lengths [n], labels [n]): noise tokens 3.., and one marker, 1 (positive)
    or 2 (negative), somewhere in each review; padding 0 after."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 13, (n,), generator=generator)
    ids = torch.randint(3, vocab, (n, 12), generator=generator)
    labels = torch.arange(n) % 2
    where = (torch.rand(n, generator=generator) * lengths).long()
    ids[torch.arange(n), where] = 2 - labels
    ids[torch.arange(12)[None, :] >= lengths[:, None]] = 0
    return ids, lengths, labels.float()


@pytest.mark.parametrize("name", NEW)
def test_new_cell_learns_a_marker_token(name):
    torch.manual_seed(0)
    ids, lengths, labels = marker_reviews()
    # `last` pooling: the state must carry the marker from wherever it stands to the review's end
    model = RecurrentClassifier(30, embed_dim=16, hidden_dim=16, cell=name, pooling="last")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        loss = nn.functional.binary_cross_entropy_with_logits(model(ids, lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = ((model(ids, lengths) > 0).float() == labels).float().mean().item()
    assert accuracy >= 0.9, f"{name}: training accuracy {accuracy:.2f} after 40 steps"


def test_registry_entries():
    assert {
        name: (cell.gates, cell.bidirectional, cell.bfloat16, cell.bfloat16_pays, cell.int8)
        for name, cell in CELLS.items()
        if name in NEW
    } == {
        "peephole_lstm": (4, True, True, False, ()),
        "goru": (3, True, True, False, ()),
        "mingru": (2, True, True, True, (nn.Linear,)),
    }
    for name, layer in zip(NEW, (PeepholeLSTM, GORU, MinGRU)):  # one layer each, carrying its state, no options
        cell = CELLS[name]
        assert (cell.layer, cell.stack, cell.carries_state, cell.options, cell.check) == (layer, False, True, {}, None)


@pytest.mark.precision
def test_a_precision_the_cell_lacks_is_refused_in_one_line_never_run_in_float32(monkeypatch):
    from imdb_rnn import predict, runtime
    from imdb_rnn.pipeline import PipelineError
    from imdb_rnn.predict import resolve_precision
    from imdb_rnn.runtime import training_precision

    # a device with native bfloat16, wherever this runs: the cell's refusal is the one under test
    monkeypatch.setattr(runtime, "native_bfloat16", lambda device: True)
    monkeypatch.setattr(predict, "native_bfloat16", lambda device: True)

    model = RecurrentClassifier(20, 8, 8, "goru", pooling="max")
    with pytest.raises(PipelineError) as refused:
        apply_precision(model, "int8")
    assert str(refused.value) == "precision is int8, but the goru cell has no int8 version: use float32 or bfloat16"
    model.cell = dataclasses.replace(model.cell, bfloat16=False)  # a cell registered without bfloat16
    for refuse in (
        lambda: training_precision("bfloat16", torch.device("cpu"), model),
        lambda: resolve_precision("bfloat16", "cpu", model.cell),
    ):
        with pytest.raises(PipelineError, match=r"bfloat16, but the goru cell does not run in bfloat16: use float32$"):
            refuse()
    # auto never refuses: it takes float32 for such a cell, even where the CPU has bfloat16
    assert training_precision("auto", torch.device("cpu"), model) == "float32"
    assert resolve_precision("auto", "cpu", model.cell) == "float32"
    assert resolve_precision("auto", "cpu", CELLS["goru"]) == "bfloat16"  # what it takes for a cell that runs it
