"""PyTorch's fused recurrent layers (one cuDNN or oneDNN kernel per layer and direction)."""

from torch import nn

from .registry import register

# a tanh RNN (Elman 1990), the exercise's model; dynamic quantization has no int8 nn.RNN
register("rnn", gates=1, paper="Elman 1990, Finding structure in time")(nn.RNN)
# oneDNN runs the fused LSTM in bfloat16 under CPU autocast; it leaves the GRU and the RNN in float32 and
# would only pay for the casts (docs/benchmarks.md)
register(
    "lstm",
    gates=4,
    paper="Hochreiter & Schmidhuber 1997; forget gate: Gers, Schmidhuber & Cummins 2000",
    bfloat16_pays=True,
    int8=(nn.LSTM,),
)(nn.LSTM)
register(
    "gru", gates=3, paper="Cho et al. 2014, Learning phrase representations using RNN encoder-decoder", int8=(nn.GRU,)
)(nn.GRU)
