"""The registry of recurrent cells: what each one is, and what it supports.

A cell is one layer in one direction. Its module is built as `layer(input_size, hidden_size)` and
runs time-major:

    forward(x [T, B, input_size], state=None) -> (outputs [T, B, hidden_size], state)

`state` is what the module returned for the steps before (None: zeros). It is a tensor [1, B, H],
or a tuple of such tensors, as nn.RNN, nn.GRU and nn.LSTM return theirs: the first tensor is the
last step's output. The output at step t may depend only on x[:t + 1] and on the incoming state, and
each review (batch column) only on its own inputs. That is what makes a classifier exact under
padding: reviews are left-aligned and each direction reads its review causally, so the steps after a
review's end never reach its real steps (model.RecurrentClassifier).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from ..pipeline import PipelineError

CELLS = {}


@dataclass(frozen=True)
class Cell:
    """One registered recurrence.

    name: the value of an architecture's `cell` in params.yaml.
    layer: the module class (or factory), called as layer(input_size, hidden_size).
    gates: weight matrices of hidden_size rows each step computes (1 for a tanh RNN, 4 for an LSTM):
        the training memory estimate counts them (runtime.training_memory).
    paper: where the recurrence comes from, for the docs and the leaderboard's readers.
    bidirectional: whether the cell may also read reviews backwards (a second module per layer).
    bfloat16: whether it runs in bfloat16 (autocast in training, bfloat16 weights in imdb-predict);
        where False, asking for bfloat16 is refused in one line.
    bfloat16_pays: whether train.precision auto picks bfloat16 for it on a CPU with native bfloat16:
        only where its kernel runs faster there (PyTorch's fused LSTM does; the fused GRU and RNN do not).
    int8: the module classes of this cell that dynamic int8 quantization converts
        (torch.ao.quantization.quantize_dynamic); empty: it has no int8 version, and int8 is refused.
    stack: the module is a whole stack of layers in one direction, built as
        layer(input_size, hidden_size, num_layers): its layers talk to each other in more ways than
        through their outputs (a Grid LSTM's cells along depth). Its state is then [num_layers, B, H].
    carries_state: whether forward continues from the state it returned. `last` pooling needs it
        (model.run_spans), so an architecture of a cell without it cannot use `last` pooling.
    options: the settings of its own that an architecture's section gives it, {key: params.Param},
        passed to the layer as keyword arguments and stored in the checkpoint.
    check: settings -> None, or (key, what is wrong) for a setting that means nothing for this cell
        (a Grid LSTM of one layer); check_params reports it as `parameter <arch>.<key> <what is wrong>`.
    """

    name: str
    layer: type
    gates: int
    paper: str
    bidirectional: bool = True
    bfloat16: bool = True
    bfloat16_pays: bool = False
    int8: tuple = field(default_factory=tuple)
    stack: bool = False
    carries_state: bool = True
    options: dict = field(default_factory=dict)
    check: Callable | None = None


def register(name, *, gates, paper, **support):
    """Class decorator: add `layer` to CELLS under `name` (see Cell for the arguments)."""

    def add(layer):
        if name in CELLS:
            raise ValueError(
                f"cell {name!r} is registered twice: by {CELLS[name].layer.__module__} and {layer.__module__}"
            )
        CELLS[name] = Cell(name=name, layer=layer, gates=gates, paper=paper, **support)
        return layer

    return add


def check_cell(name, what="cell"):
    """The Cell registered as `name`; a one-line PipelineError naming the known ones otherwise."""
    if name not in CELLS:
        raise PipelineError(
            f"unknown {what} {name!r}: the known cells are {', '.join(CELLS)} "
            "(src/imdb_rnn/cells; docs/adding-an-architecture.md adds one)"
        )
    return CELLS[name]
