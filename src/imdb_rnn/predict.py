"""Score new reviews with a trained checkpoint: the `imdb-predict` command and its Python API.

A checkpoint carries everything needed to read new text the way training did: the cleaning
settings, the vocabulary and the padding/truncation settings. `Predictor` applies exactly those
(text.tokenize, then batches.align_left), scores reviews in large length-sorted batches, and for
attention models returns the attention weight of every word the model read.

    from imdb_rnn.predict import Predictor
    predictor = Predictor.load("data/models/bilstm.pt")
    predictor.probabilities(["A wonderful film.", "Dull and far too long."])
"""

import argparse
import codecs
import copy
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .artifacts import PipelineError, run_main
from .batches import Reviews, align_left, by_length
from .params import BASELINE, check, read_architectures
from .text import (CLEAN_SCHEMA, RESERVED, TOKENIZE_SCHEMA, UNK_ID, as_arrow, clean_texts, split_words, tokenize,
                   without_known_words)
from .train import configure_cpu, load_checkpoint, pick_device, predict_logits, retrain_hint

PRECISIONS = ("float32", "bfloat16", "int8")
# cleaning that changes nothing: for text that is already clean (data/clean/reviews.parquet)
NO_CLEANING = {"lowercase": False, "strip_html_breaks": False, "punctuation": "keep"}
DEFAULT_BATCH_SIZE = 128  # reviews per batch; see benchmarks/bench_predict.py


@dataclass
class Explanation:
    """What an attention model read in one review and how much weight each word got."""

    probability: float  # of a positive review
    words: list  # the cleaned words the model read, in order (after truncation)
    weights: np.ndarray  # attention weight of each word (they sum to 1 over the words read)
    known: np.ndarray  # False where the word is not in the vocabulary (the model saw <unk>)
    n_words: int  # words in the whole cleaned review, before truncation

    @property
    def label(self):
        return label_of(self.probability)


def label_of(probability):
    # logit > 0 is a positive review, as in training's accuracy
    return "pos" if probability > 0.5 else "neg"


def apply_precision(model, precision):
    """Return the model to run: float32 as trained, bfloat16 weights, or int8 dynamic quantization.

    int8 quantizes the recurrent layers and the linear layers (weights to int8 once, activations
    per batch); nn.RNN has no quantized version and stays float32. bfloat16 pays off on CPUs with
    AMX/AVX512-BF16 (oneDNN kernels) and on GPUs.
    """
    if precision == "float32":
        return model
    if precision == "bfloat16":
        return copy.deepcopy(model).to(torch.bfloat16)
    if precision == "int8":
        if next(model.parameters()).device.type != "cpu":
            raise PipelineError("int8 quantization runs on the CPU only: add --device cpu")
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8)
    raise PipelineError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")


def check_payload(payload, path):
    """The checkpoint's text settings must be complete before any review is read with them."""
    for key in ("vocab", "clean", "tokenize", "model_config"):
        if key not in payload:
            raise PipelineError(f"checkpoint {path} lacks '{key}': retrain it ({retrain_hint(path, payload.get('arch'))})")
    try:
        check("clean", payload["clean"], CLEAN_SCHEMA)
        check("tokenize", payload["tokenize"], TOKENIZE_SCHEMA)
    except PipelineError as err:
        raise PipelineError(f"checkpoint {path} has bad text settings ({err}): retrain it")
    vocab = payload["vocab"]
    if not isinstance(vocab, list) or vocab[: len(RESERVED)] != RESERVED or not all(isinstance(w, str) for w in vocab):
        raise PipelineError(f"checkpoint {path} has no valid vocabulary: retrain it")
    if len(vocab) != payload["model_config"].get("vocab_size"):
        raise PipelineError(
            f"checkpoint {path} has {len(vocab)} vocabulary entries but a model for "
            f"{payload['model_config'].get('vocab_size')}: retrain it"
        )


class Predictor:
    """A loaded model plus the text settings it was trained with."""

    def __init__(self, model, payload, device="cpu", precision="float32", batch_size=DEFAULT_BATCH_SIZE):
        self.payload = payload
        self.device = torch.device(device)
        self.precision = precision
        self.model = apply_precision(model.to(self.device).eval(), precision)
        self.batch_size = batch_size

    @classmethod
    def load(cls, path, device="cpu", precision="float32", batch_size=DEFAULT_BATCH_SIZE):
        model, payload = load_checkpoint(path, device)
        check_payload(payload, path)
        return cls(model, payload, device, precision, batch_size)

    @property
    def arch(self):
        return self.payload.get("arch", "?")

    @property
    def has_attention(self):
        return self.payload["model_config"].get("pooling") == "attention"

    def encode(self, texts, cleaned=False):
        """Reviews (left-aligned ids, kept lengths) and full word counts, exactly as in training.

        cleaned=True reads text that the clean stage already cleaned, the way the tokenize stage did.
        """
        clean = NO_CLEANING if cleaned else self.payload["clean"]
        tok = self.payload["tokenize"]
        ids, kept, n_words = tokenize(texts, self.payload["vocab"], clean, tok)
        ids = align_left(ids, kept, tok["pad_side"])
        return Reviews(ids, kept, np.zeros(len(kept), np.float32)), n_words

    def _score(self, texts, cleaned):
        reviews, _ = self.encode(texts, cleaned)
        with torch.inference_mode():
            return reviews, predict_logits(self.model, reviews, self.batch_size, self.device)

    def logits(self, texts, cleaned=False):
        """The model's logit for each review, in the order given (> 0: positive), as the evaluate
        stage computes it: a review with no vocabulary word is read as one <unk>."""
        texts = list(texts)
        if not texts:
            return np.zeros(0, np.float32)
        return self._score(texts, cleaned)[1]

    def probabilities(self, texts, cleaned=False):
        """Probability that each review is positive, in the order given; NaN for a review with no
        word in the vocabulary (text.without_known_words), which gives the model nothing to judge."""
        texts = list(texts)
        if not texts:
            return np.zeros(0, np.float32)
        reviews, logits = self._score(texts, cleaned)
        probs = torch.sigmoid(torch.from_numpy(logits)).numpy()
        probs[without_known_words(reviews.ids)] = np.nan
        return probs

    def unscorable(self, texts, cleaned=False):
        """For each review, why it gets no probability (no words after cleaning, or none the model
        knows), or None when it can be scored."""
        texts = list(texts)
        if not texts:
            return []
        reviews, n_words = self.encode(texts, cleaned)
        empty = without_known_words(reviews.ids)
        return [None if not e else "no words left after cleaning" if n == 0 else
                f"none of its {n} word(s) is in the model's vocabulary" for e, n in zip(empty, n_words)]

    def explain(self, texts, cleaned=False):
        """An Explanation per review: probability and the attention weight of every word read."""
        if not self.has_attention:
            raise PipelineError(
                f"explanations need an attention model; this checkpoint is '{self.arch}' "
                f"(pooling {self.payload['model_config'].get('pooling')}): use --arch attention"
            )
        texts = list(texts)
        if not texts:
            return []
        texts = as_arrow(texts) if cleaned else clean_texts(texts, self.payload["clean"])
        reviews, n_words = self.encode(texts, cleaned=True)
        words, counts = split_words(texts)
        words = words.to_pylist()
        starts = np.cumsum(counts) - counts
        probs, weights = self._attention(reviews)
        out = []
        for i, (start, total, kept) in enumerate(zip(starts, counts, reviews.lengths)):
            # the words the model read: the same end of a long review that pad() kept
            kept = min(int(kept), int(total))  # an empty review is read as one <unk> with no word to show
            if self.payload["tokenize"]["truncate_side"] == "left":
                start += total - kept
            out.append(
                Explanation(
                    probability=float(probs[i]),
                    words=words[start : start + kept],
                    weights=weights[i][:kept],
                    known=reviews.ids[i, :kept] != UNK_ID,
                    n_words=int(n_words[i]),
                )
            )
        return out

    def _attention(self, reviews):
        probs = np.zeros(len(reviews), np.float32)
        weights = [None] * len(reviews)
        with torch.inference_mode():
            for rows in by_length(reviews.lengths, self.batch_size):
                ids, lengths, _ = reviews.batch(rows, self.device)
                logits, attention = self.model(ids, lengths, return_attention=True)
                probs[rows] = torch.sigmoid(logits.float()).cpu().numpy()
                attention = attention.float().cpu().numpy()
                for row, a, n in zip(rows, attention, reviews.lengths[rows]):
                    weights[row] = a[:n]
        return probs, weights


def resolve_checkpoint(model=None, arch=None, models_dir="data/models", leaderboard="metrics/leaderboard.json",
                       params="params.yaml"):
    """The checkpoint to use: --model, else --arch, else the leaderboard's best recurrent architecture.

    An --arch with no checkpoint that params.yaml does not list either is a misspelling, reported as such.
    """
    if model:
        return Path(model)
    if arch:
        path = Path(models_dir) / f"{arch}.pt"
        if not path.exists() and Path(params).exists():
            known = list(read_architectures(params))
            if arch not in known:
                raise PipelineError(f"unknown architecture {arch!r}: {params} lists {', '.join(known)}")
        return path
    path = Path(leaderboard)
    if not path.exists():
        raise PipelineError(
            f"no model chosen and {path} is missing (the compare stage makes it): pass --arch NAME "
            f"(a file {models_dir}/NAME.pt, e.g. --arch bilstm) or --model PATH"
        )
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
        rows = board["rows"] if isinstance(board, dict) else board  # the compare stage wraps its rows
        # the best recurrent model: the n-gram baseline has no checkpoint to load
        best = next(row["arch"] for row in rows if row["arch"] != BASELINE)
        if not isinstance(best, str) or not best:
            raise TypeError
    except (ValueError, UnicodeDecodeError, LookupError, TypeError, StopIteration):
        raise PipelineError(f"{path} is not a leaderboard (rows with an 'arch', best first): pass --arch NAME")
    return Path(models_dir) / f"{best}.pt"


# ---------------------------------------------------------------- command line


@dataclass
class Item:
    """One review to score, or the reason it could not be read."""

    source: str
    text: str | None = None
    error: str | None = None


def decode(raw, source, warn):
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - raw.count("\ufffd".encode())
    if bad:
        warn(f"warning: {source} is not valid UTF-8: {bad} bad byte sequence(s) replaced (as the ingest stage does)")
    return text


def read_file(path, warn):
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return Item(path, error="no such file")
    except IsADirectoryError:
        return Item(path, error="is a directory, not a review file")
    except OSError as err:
        return Item(path, error=err.strerror or type(err).__name__)
    return Item(path, decode(raw, path, warn))


def read_stdin(warn):
    """One review per line; blank lines separate nothing and are skipped."""
    text = decode(sys.stdin.buffer.read(), "standard input", warn)
    return [Item(f"stdin:{n}", line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _names_a_file(text):
    try:
        return "\n" not in text and Path(text).is_file()
    except (OSError, ValueError):  # too long for a file name, or a NUL byte in it
        return False


def gather_inputs(args, warn):
    items, stdin_used = [], False
    for n, text in enumerate(args.texts, 1):
        if text == "-":
            if not stdin_used:
                items += read_stdin(warn)
                stdin_used = True
        else:
            if _names_a_file(text):
                warn(f"warning: arg:{n} ({text}) is scored as text, but a file of that name exists: use --file {text} to score what it holds")
            items.append(Item(f"arg:{n}", text))
    for path in args.file or []:
        items.append(read_file(path, warn))
    if not args.texts and not args.file:
        if sys.stdin is None or sys.stdin.isatty():
            raise PipelineError("nothing to score: give review texts, --file PATH, or pipe reviews (one per line) on standard input")
        items = read_stdin(warn)
    return items


def preview(text, width=60):
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_table(items, probs, out):
    """A readable table: one row per review (errors are reported on stderr instead)."""
    rows = [(str(i), label_of(p), f"{p:.3f}", item.source, preview(item.text)) for i, (item, p) in enumerate(zip(items, probs), 1)]
    header = ("#", "label", "p(pos)", "source", "review")
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(4)]
    for row in [header] + rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] + "\n")


def most_attended(weights, top):
    """Positions of the `top` heaviest words, among those above the review's average weight."""
    order = np.argsort(-weights, kind="stable")[:top]
    return set(order[weights[order] > 1.0 / len(weights)].tolist()) if len(weights) else set()


def mark(words, weights, top, bold, known=None):
    """Words with the most attended ones marked ([[word]], or bold in a terminal); a word the model
    read as <unk> is shown as <unk:word>."""
    marked = most_attended(weights, top)
    start, end = ("\033[1m", "\033[0m") if bold else ("[[", "]]")
    known = np.ones(len(words), bool) if known is None else known
    shown = [w if k else f"<unk:{w}>" for w, k in zip(words, known)]
    return " ".join(f"{start}{w}{end}" if i in marked else w for i, w in enumerate(shown))


def print_explanations(items, explanations, top, bold, out):
    for item, e in zip(items, explanations):
        out.write(f"{item.source}: {e.label} p(pos)={e.probability:.3f}\n")
        out.write("  " + mark(e.words, e.weights, top, bold, e.known) + "\n")
        if e.n_words > len(e.words):
            out.write(f"  … {e.n_words - len(e.words)} more words not read (the model reads {len(e.words)})\n")


def json_record(item, prob=None, explanation=None):
    """One review's JSON object: label and probability, or null ones with the reason (`error`)."""
    if item.error:
        return {"source": item.source, "label": None, "probability": None, "error": item.error}
    record = {"source": item.source, "label": label_of(prob), "probability": round(float(prob), 6)}
    if explanation is not None:
        record["words"] = explanation.words
        record["known"] = [bool(k) for k in explanation.known]
        record["attention"] = [round(float(w), 6) for w in explanation.weights]
        record["n_words"] = explanation.n_words
    return record


def write_json_lines(records, out):
    """JSON lines, lossless on any terminal: raw UTF-8 where stdout takes it, \\u escapes elsewhere."""
    encoding = getattr(out, "encoding", None) or "ascii"
    try:
        utf = codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        utf = False
    for record in records:
        out.write(json.dumps(record, ensure_ascii=not utf) + "\n")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="imdb-predict",
        description="Label movie reviews positive or negative with a trained checkpoint.",
        epilog="Reviews come from the arguments ('-' reads standard input), --file (one review per file), "
        "or standard input when nothing else is given (one review per line, blank lines skipped).",
    )
    parser.add_argument("texts", nargs="*", help="review texts; '-' reads reviews from standard input, one per line")
    parser.add_argument("--file", action="append", metavar="PATH", help="a text file holding one review (repeatable)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="PATH", help="checkpoint file")
    which.add_argument("--arch", metavar="NAME", help="use data/models/NAME.pt")
    parser.add_argument("--models-dir", default="data/models", help="where --arch looks (default data/models)")
    parser.add_argument("--leaderboard", default="metrics/leaderboard.json", help="picks the default model: its best row's arch")
    parser.add_argument("--json", action="store_true", help="one JSON object per review (JSON lines)")
    parser.add_argument("--explain", action="store_true", help="mark the most attended words (attention models; default --arch attention)")
    parser.add_argument("--top", type=int, default=5, help="most words marked per review with --explain, among those above average weight (default 5)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="float32 (as trained), bfloat16 or int8")
    parser.add_argument("--quantize", action="store_true", help="same as --precision int8 (dynamic quantization)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="reviews per batch")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    args = parser.parse_args(argv)
    if args.quantize:
        args.precision = "int8"
    if args.batch_size < 1 or args.top < 1 or args.threads < 0:
        parser.error("--batch-size and --top must be at least 1, --threads at least 0")
    if args.explain and not (args.model or args.arch):
        args.arch = "attention"
    return args


def main(argv=None):
    """Score the reviews `argv` names; return the exit status (1 when any review could not be scored)."""
    args = parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # a review's emoji must not fail on a narrow terminal encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")

    def warn(message):
        print(message, file=sys.stderr)

    items = gather_inputs(args, warn)
    if not items:
        raise PipelineError("nothing to score: standard input held no reviews (one per line)")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise PipelineError("--device cuda, but no CUDA device is visible: use --device cpu")
    configure_cpu(args.threads)
    path = resolve_checkpoint(args.model, args.arch, args.models_dir, args.leaderboard)
    predictor = Predictor.load(path, pick_device(args.device), args.precision, args.batch_size)

    readable = [item for item in items if not item.error]
    for item, reason in zip(readable, predictor.unscorable([item.text for item in readable])):
        item.error = reason and f"{reason}: nothing to score ({preview(item.text, 30)!r})"
    good = [item for item in items if not item.error]
    texts = [item.text for item in good]
    if args.explain:
        explanations = predictor.explain(texts)
        probs = [e.probability for e in explanations]
    else:
        explanations, probs = None, predictor.probabilities(texts)

    out = sys.stdout
    if args.json:
        scored = {id(item): i for i, item in enumerate(good)}
        write_json_lines([json_record(item) if item.error else
                          json_record(item, probs[scored[id(item)]], explanations[scored[id(item)]] if explanations else None)
                          for item in items], out)
    elif explanations is not None:
        bold = out.isatty() and "NO_COLOR" not in os.environ
        print_explanations(good, explanations, args.top, bold, out)
    elif good:
        print_table(good, probs, out)
    for item in items:
        if item.error:
            warn(f"error: {item.source}: {item.error}")
    return 1 if len(good) < len(items) else 0


def cli(argv=None):
    """Console entry point: one-line errors, exit 1 when anything could not be scored."""
    sys.exit(run_main(lambda: main(argv)))


if __name__ == "__main__":
    cli()
