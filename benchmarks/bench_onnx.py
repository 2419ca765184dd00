"""Is ONNX Runtime faster than PyTorch at scoring `bilstm` on this CPU?

Exports a one-layer bidirectional max-pooling checkpoint (bilstm's shape) to ONNX with PyTorch's
TorchScript exporter, then scores the test reviews' token batches (data/tokens/test.npz, batches of
similar length as imdb-predict makes them; the model alone, no text processing) four ways in one
process, each timed on its second pass over the reviews: PyTorch one lane of two threads (the
baseline), PyTorch two lanes of one thread (what imdb-predict does on this CPU), ONNX Runtime one
session of two threads, and two lanes of one thread each. Prints reviews/s, each as a ratio to the
baseline, and the largest probability change against PyTorch (the issue asks for 1e-4 of float32's).
onnxruntime and onnx are not project dependencies: `pip install onnxruntime onnx` first.

    python benchmarks/bench_onnx.py --model data/models/bilstm/seed42.pt
    python benchmarks/bench_onnx.py --model data/models/bilstm/seed42.pt --limit 2000 --batch-size 128
"""

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from machine import describe  # benchmarks/machine.py

from imdb_rnn.batches import Reviews, by_length
from imdb_rnn.checkpoint import load_checkpoint
from imdb_rnn.model import reversal_index, reverse
from imdb_rnn.pipeline import PipelineError, run_main


class MaxPooledBiRNN(torch.nn.Module):
    """A one-layer bidirectional max-pooling RecurrentClassifier with every step masked, so that a
    trace holds for any batch: ids [B, T] left-aligned, lengths [B] -> logits [B]. (The model's own
    forward trims to the batch's lengths with Python ints, which a trace would freeze.)"""

    def __init__(self, model):
        super().__init__()
        if model.pooling != "max" or len(model.layers) != 1 or len(model.layers[0]) != 2:
            raise PipelineError("bench_onnx exports one-layer bidirectional max-pooling models (bilstm's shape) only")
        self.model = model

    def forward(self, ids, lengths):
        m, steps = self.model, ids.shape[1]
        x = m.embedding(ids.t())  # [T, B, E]
        real = (torch.arange(steps)[:, None] < lengths[None, :])[:, :, None]
        flip = reversal_index(lengths, steps)
        forward_rnn, backward_rnn = m.layers[0]
        outs = [forward_rnn(x)[0], backward_rnn(reverse(x, flip))[0]]
        pooled = [torch.where(real, out, torch.tensor(float("-inf"))).amax(0) for out in outs]
        return m.head(torch.cat(pooled, -1)).squeeze(-1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="data/models/bilstm/seed42.pt")
    parser.add_argument("--tokens", default="data/tokens/test.npz", help="the tokenize stage's test reviews")
    parser.add_argument("--batch-size", type=int, default=64, help="imdb-predict's default")
    parser.add_argument("--limit", type=int, default=0, help="score the first N reviews by length only (0: all)")
    args = parser.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        raise PipelineError("onnxruntime is not installed: pip install onnxruntime onnx (not a project dependency)")
    print(describe())
    print(f"onnxruntime {ort.__version__}")
    model, payload = load_checkpoint(args.model, "cpu")
    model.eval()
    export = MaxPooledBiRNN(model).eval()
    reviews = Reviews.load(args.tokens, payload["tokenize"], payload["tokenize"]["seq_len"], "test reviews")
    n = min(args.limit or len(reviews), len(reviews))
    batches = []
    for rows in by_length(reviews.lengths[:n], args.batch_size):
        ids, lengths, _ = reviews.batch(rows, "cpu")
        batches.append((rows, ids, lengths))

    path = Path(tempfile.mkdtemp()) / "model.onnx"
    torch.onnx.export(
        export,
        batches[-1][1:],
        path,
        input_names=["ids", "lengths"],
        output_names=["logits"],
        dynamic_axes={"ids": {0: "batch", 1: "steps"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )

    def session(threads):
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def score_torch(share, threads):
        torch.set_num_threads(threads)
        out = np.zeros(n, np.float32)
        with torch.inference_mode():
            for rows, ids, lengths in share:
                out[rows] = model(ids, lengths).numpy()
        return out

    def score_ort(share, sess):
        out = np.zeros(n, np.float32)
        for rows, ids, lengths in share:
            out[rows] = sess.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})[0]
        return out

    def in_lanes(score, args_per_lane):
        shares = [batches[i :: len(args_per_lane)] for i in range(len(args_per_lane))]
        with ThreadPoolExecutor(len(shares)) as pool:
            return np.sum(list(pool.map(score, shares, args_per_lane)), axis=0)  # each lane fills its own rows

    threads = torch.get_num_threads()
    one, lanes = session(threads), [session(1) for _ in range(threads)]
    ways = {
        f"PyTorch, 1 lane x {threads} threads": lambda: score_torch(batches, threads),
        f"PyTorch, {threads} lanes x 1 thread": lambda: in_lanes(score_torch, [1] * threads),
        f"ONNX Runtime, 1 session x {threads} threads": lambda: score_ort(batches, one),
        f"ONNX Runtime, {threads} lanes x 1 thread": lambda: in_lanes(score_ort, lanes),
    }
    logits, seconds, first = {}, {}, {}
    for name, run in ways.items():
        # two passes, the second timed: a batch shape seen for the first time costs a kernel set-up
        # (oneDNN primitives, cached per shape), which would favour whichever way runs later
        for seconds_of in (first, seconds):
            start = time.perf_counter()
            logits[name] = run()
            seconds_of[name] = time.perf_counter() - start
    torch.set_num_threads(threads)
    base = next(iter(ways))
    probs = {name: 1 / (1 + np.exp(-out.astype(np.float64))) for name, out in logits.items()}
    print(f"{n} test reviews, batch {args.batch_size}, {args.model}")
    for name in ways:
        change = np.abs(probs[name] - probs[base]).max()
        print(
            f"{name:40s} {n / seconds[name]:8,.0f} reviews/s  {seconds[base] / seconds[name]:5.2f}x  "
            f"largest probability change {change:.1e}  (first pass {n / first[name]:,.0f} reviews/s)"
        )


if __name__ == "__main__":
    run_main(main)
