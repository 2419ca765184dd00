"""The `imdb-predict` command: label reviews from arguments, files or standard input with a checkpoint.

The library it calls is predict.Predictor; this module only reads inputs and writes answers.
"""

import argparse
import codecs
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .artifacts import PipelineError, run_main
from .predict import DEFAULT_BATCH_SIZE, PRECISIONS, Predictor, label_of, resolve_checkpoint, unscorable_reason
from .runtime import configure_cpu, pick_device


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


def json_record(item, prob=None, explanation=None, precision=None):
    """One review's JSON object: label, probability and the precision that computed it, or null ones with the reason (`error`)."""
    if item.error:
        return {"source": item.source, "label": None, "probability": None, "error": item.error}
    record = {"source": item.source, "label": label_of(prob), "probability": round(float(prob), 6), "precision": precision}
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
    which.add_argument("--arch", metavar="NAME", help="use NAME's seed with the best validation accuracy (data/models/NAME/seed*.pt)")
    parser.add_argument("--seed", type=int, metavar="N", help="use this training seed of --arch (or of the default model's architecture) instead")
    parser.add_argument("--models-dir", default="data/models", help="where --arch looks (default data/models)")
    parser.add_argument("--leaderboard", default="metrics/leaderboard.json", help="picks the default model: its best row's arch")
    parser.add_argument("--json", action="store_true", help="one JSON object per review (JSON lines)")
    parser.add_argument("--explain", action="store_true", help="mark the most attended words (attention models; default --arch attention)")
    parser.add_argument("--top", type=int, default=5, help="most words marked per review with --explain, among those above average weight (default 5)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="float32 (default: as trained), bfloat16, int8, or auto: bfloat16 where the CPU (AMX, "
                        "AVX512-BF16) or GPU has it, else float32")
    parser.add_argument("--quantize", action="store_true", help="same as --precision int8 (dynamic quantization)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"reviews per batch (and lane; default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core this process may use)")
    parser.add_argument("--lanes", type=int, default=0,
                        help="on a CPU, score in this many threads of one core each (0 = auto: one per --threads "
                        "thread when there are at least 4 batches a lane; 1 = off; --explain runs in one lane)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    args = parser.parse_args(argv)
    if args.quantize:
        args.precision = "int8"
    if args.batch_size < 1 or args.top < 1 or args.threads < 0 or args.lanes < 0:
        parser.error("--batch-size and --top must be at least 1, --threads and --lanes at least 0")
    if args.seed is not None and (args.seed < 0 or args.model):
        parser.error("--seed must be >= 0 and picks among an architecture's seeds: use it with --arch (or alone), not with --model")
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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # the project's own (a seed without a checkpoint)
        path = resolve_checkpoint(args.model, args.arch, args.models_dir, args.leaderboard, seed=args.seed)
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            warn(f"warning: {warning.message}")
    predictor = Predictor.load(path, pick_device(args.device), args.precision, args.batch_size, args.lanes)

    readable = [item for item in items if not item.error]
    texts = [item.text for item in readable]
    if args.explain:  # one pass over the text: an explanation says which words the model knew
        explanations = predictor.explain(texts)
        probs = [e.probability for e in explanations]
        reasons = [None if e.known.any() else unscorable_reason(e.n_words) for e in explanations]
    else:
        explanations = None
        probs, reasons = predictor.score(texts)
    for item, reason in zip(readable, reasons):
        item.error = reason and f"{reason}: nothing to score ({preview(item.text, 30)!r})"
    kept = [i for i, reason in enumerate(reasons) if reason is None]
    good = [readable[i] for i in kept]
    probs = [probs[i] for i in kept]
    explanations = [explanations[i] for i in kept] if explanations is not None else None

    out = sys.stdout
    if args.json:
        scored = {id(item): i for i, item in enumerate(good)}
        write_json_lines([json_record(item) if item.error else
                          json_record(item, probs[scored[id(item)]], explanations[scored[id(item)]] if explanations else None,
                                      predictor.precision)
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
