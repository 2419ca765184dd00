"""The recurrent classifier: padding never changes a logit, and it matches PyTorch's packed reference."""

import numpy as np
import pytest
import torch
from conftest import repo_params
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from imdb_rnn.batches import Reviews, align_left
from imdb_rnn.cells import CELLS
from imdb_rnn.config import ARCH_SCHEMA, ModelConfig, arch_schema, architecture_section
from imdb_rnn.model import RecurrentClassifier
from imdb_rnn.params import check
from imdb_rnn.pipeline import PipelineError
from imdb_rnn.text import pad

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: more threads only add overhead

VOCAB = 40
PARAMS = repo_params()
ARCHS = PARAMS["architectures"]


def small_model(arch, seed=0):
    """The architecture exactly as params.yaml describes it, with small widths."""
    section = dict({**PARAMS["arch_defaults"], **architecture_section(PARAMS, arch)}, embed_dim=12, hidden_dim=10)
    if "attention_dim" in section:
        section["attention_dim"] = 6
    torch.manual_seed(seed)
    return (
        ModelConfig.from_dict({**check(arch, section, arch_schema(section["cell"])), "vocab_size": VOCAB})
        .build()
        .eval()
    )


def reviews_as_pipeline_pads_them(lengths, pad_side, seq_len=32, seed=0):
    """Random reviews padded by imdb_rnn.text.pad, then left-aligned as the trainer does."""
    rng = np.random.default_rng(seed)
    flat = rng.integers(1, VOCAB, int(sum(lengths))).astype(np.int32)
    matrix, kept = pad(flat, lengths, seq_len, pad_side, "right")
    return Reviews(align_left(matrix, kept, pad_side), kept, np.zeros(len(lengths)))


@pytest.mark.parametrize("pad_side", ["left", "right"])
@pytest.mark.parametrize("arch", ARCHS)
def test_padding_never_changes_a_logit(arch, pad_side):
    model = small_model(arch)
    lengths = [9, 3, 17, 1, 9, 12, 2]
    reviews = reviews_as_pipeline_pads_them(lengths, pad_side)
    rows = np.arange(len(lengths))
    with torch.no_grad():
        together = model(*reviews.batch(rows, "cpu")[:2])
        alone = torch.cat([model(*reviews.batch(rows[i : i + 1], "cpu")[:2]) for i in rows])
        # a batch in another order and with more padding than it needs
        ids, lens, _ = reviews.batch(rows[::-1], "cpu")
        wide = model(torch.nn.functional.pad(ids, (0, 5)), lens).flip(0)
    assert torch.isfinite(together).all()
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(wide, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_left_and_right_padding_agree(arch):
    model = small_model(arch)
    lengths = [5, 14, 1, 8]
    rows = np.arange(len(lengths))
    with torch.no_grad():
        left, right = (
            model(*reviews_as_pipeline_pads_them(lengths, side).batch(rows, "cpu")[:2]) for side in ("left", "right")
        )
    torch.testing.assert_close(left, right, rtol=0, atol=1e-5)


def test_the_exercise_model_size():
    # embedding 100, one tanh RNN of 32 units, one logit: the exercise's parameter count for its vocabulary
    model = ModelConfig.from_dict({**PARAMS["arch_defaults"], **PARAMS["rnn"], "vocab_size": 10001}).build()
    assert sum(p.numel() for p in model.parameters()) == 10001 * 100 + (100 * 32 + 32 * 32 + 32 + 32) + 33


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bilstm_matches_packed_sequence_reference(num_layers):
    torch.manual_seed(1)
    hidden = 7
    model = RecurrentClassifier(
        VOCAB, embed_dim=5, hidden_dim=hidden, cell="lstm", num_layers=num_layers, bidirectional=True, pooling="last"
    ).eval()
    reference = nn.LSTM(5, hidden, num_layers=num_layers, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer, (forward, backward) in enumerate(model.layers):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(forward, f"{name}_l0"))
                getattr(reference, f"{name}_l{layer}_reverse").copy_(getattr(backward, f"{name}_l0"))

    lengths = torch.tensor([6, 2, 11, 1, 6])
    ids = torch.randint(1, VOCAB, (len(lengths), 11))
    ids[torch.arange(11)[None, :] >= lengths[:, None]] = 0
    with torch.no_grad():
        packed = pack_padded_sequence(model.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        outputs, (h, _) = reference(packed)
        expected_last = model.head(torch.cat([h[-2], h[-1]], dim=-1)).squeeze(-1)
        torch.testing.assert_close(model(ids, lengths), expected_last, rtol=0, atol=1e-5)

        # every time step too: max pooling over the real steps equals the packed outputs' max
        model.pooling = "max"
        padded, _ = pad_packed_sequence(outputs, batch_first=True, padding_value=float("-inf"))
        expected_max = model.head(padded.max(1).values).squeeze(-1)
        torch.testing.assert_close(model(ids, lengths), expected_max, rtol=0, atol=1e-5)


def test_unknown_cell_rejected_with_the_known_ones():
    with pytest.raises(PipelineError) as unknown:
        RecurrentClassifier(VOCAB, cell="transformer")
    assert str(unknown.value) == (
        f"unknown cell 'transformer': the known cells are {', '.join(CELLS)} "
        "(src/imdb_rnn/cells; docs/adding-an-architecture.md adds one)"
    )
    assert list(CELLS)[:3] == ["rnn", "lstm", "gru"]
    with pytest.raises(ValueError, match=r"known poolings are last, mean, max, attention"):
        RecurrentClassifier(VOCAB, pooling="sum")
    with pytest.raises(PipelineError, match=r"rnn\.cell must be one of rnn, lstm, gru"):
        check("rnn", {**PARAMS["arch_defaults"], **PARAMS["rnn"], "cell": "transformer"}, ARCH_SCHEMA)


def test_attention_weights_cover_real_tokens_only():
    model = small_model("attention")
    lengths = [7, 2, 13, 1]
    reviews = reviews_as_pipeline_pads_them(lengths, "left")
    ids, lens, _ = reviews.batch(np.arange(len(lengths)), "cpu")
    with torch.no_grad():
        logits, weights = model(ids, lens, return_attention=True)
        plain = model(ids, lens)
    assert weights.shape == (len(lengths), max(lengths))
    torch.testing.assert_close(logits, plain)
    for row, n in enumerate(lengths):
        assert abs(weights[row, :n].sum().item() - 1) < 1e-6
        assert (weights[row, :n] > 0).all()
        assert (weights[row, n:] == 0).all()
    assert small_model("rnn")(ids, lens, return_attention=True)[1] is None


@pytest.mark.parametrize(
    "cell, pooling", [("gru", "last"), ("gru", "max"), ("rnn", "last"), ("rnn", "mean"), ("gru", "attention")]
)
def test_gru_rnn_and_attention_match_packed_sequence_reference(cell, pooling):
    torch.manual_seed(2)
    hidden = 6
    model = RecurrentClassifier(
        VOCAB, embed_dim=5, hidden_dim=hidden, cell=cell, bidirectional=True, pooling=pooling, attention_dim=4
    ).eval()
    reference = getattr(nn, cell.upper())(5, hidden, bidirectional=True, batch_first=True)
    forward, backward = model.layers[0]
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(reference, f"{name}_l0").copy_(getattr(forward, f"{name}_l0"))
            getattr(reference, f"{name}_l0_reverse").copy_(getattr(backward, f"{name}_l0"))

    lengths = torch.tensor([6, 2, 11, 1, 6, 9])
    ids = torch.randint(1, VOCAB, (len(lengths), 11))
    real = torch.arange(11)[None, :] < lengths[:, None]
    ids[~real] = 0
    with torch.no_grad():
        packed = pack_padded_sequence(model.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        outputs, h = reference(packed)
        padded, _ = pad_packed_sequence(outputs, batch_first=True)  # [B, T, 2H], zeros after each review
        if pooling == "last":
            pooled = torch.cat([h[-2], h[-1]], dim=-1)
        elif pooling == "max":
            pooled = padded.masked_fill(~real[:, :, None], float("-inf")).max(1).values
        elif pooling == "mean":
            pooled = padded.sum(1) / lengths[:, None]
        else:  # attention over the real steps only
            scores = model.attention(padded).squeeze(-1).masked_fill(~real, float("-inf"))
            pooled = torch.einsum("bt,btf->bf", torch.softmax(scores, dim=1), padded)
        expected = model.head(pooled).squeeze(-1)
        torch.testing.assert_close(model(ids, lengths), expected, rtol=0, atol=1e-5)
