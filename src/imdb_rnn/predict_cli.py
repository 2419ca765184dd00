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

from .pipeline import PipelineError, resource_error, run_main, standard_output
from .predict import DEFAULT_BATCH_SIZE, PRECISIONS, Predictor, label_of, resolve_checkpoint, unscorable_reason
from .runtime import configure_cpu, pick_device


@dataclass
class Item:
    """One review to score, or the reason it could not be read."""

    source: str
    text: str | None = None
    error: str | None = None


# the encodings a review file may be in, told by its byte-order mark; none: UTF-8
BOMS = ((codecs.BOM_UTF16_LE, "utf-16", "UTF-16"), (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"))


def decode(raw, source, warn):
    """The text of `raw`: UTF-8 (with or without a byte-order mark), or UTF-16 with one (what Windows
    Notepad saves as "Unicode"). Invalid UTF-8 is replaced, as the ingest stage does, with a warning
    that says how much; invalid UTF-16 is refused. Returns (text, None) or (None, the reason)."""
    for bom, codec, name in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec), None
            except UnicodeDecodeError as err:
                return (
                    None,
                    f"starts with a {name} byte-order mark but is not valid {name} (byte {err.start}): "
                    "save it as UTF-8",
                )
    raw = raw.removeprefix(codecs.BOM_UTF8)  # then UTF-8 like any other: invalid bytes replaced, with the warning
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - raw.count("\ufffd".encode())
    if bad:
        warn(
            f"warning: {source} is not valid UTF-8 (nor UTF-16 with a byte-order mark): {bad} bad byte sequence(s) "
            "replaced with U+FFFD and the rest scored (as the ingest stage does)"
        )
    return text, None


def unreadable(text):
    """Why `text` is no review to score, or None: NUL characters mean a binary file or a text in another
    encoding (UTF-16 without a byte-order mark, UTF-32), which would score as noise."""
    if "\x00" in text:
        return (
            "holds NUL characters, so it is not UTF-8 text (UTF-16 without a byte-order mark, or a binary file?): "
            "save it as UTF-8"
        )
    return None


def read_file(path, warn):
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return Item(path, error="no such file")
    except IsADirectoryError:
        return Item(path, error="is a directory, not a review file")
    except OSError as err:
        return Item(path, error=err.strerror or type(err).__name__)
    text, error = decode(raw, path, warn)
    return Item(path, text, error or unreadable(text))


def read_stdin(warn):
    """One review per line: lines end at "\n" only, with a trailing "\r" dropped, so that stdin:N is
    input line N (str.splitlines would also split at U+0085, U+2028 or a form feed inside a review,
    which clean.normalize reads as spaces). Blank lines are skipped, keeping the numbering."""
    text, error = decode(sys.stdin.buffer.read(), "standard input", warn)
    if error:
        raise PipelineError(f"standard input {error}")
    items = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip():
            items.append(Item(f"stdin:{n}", line, unreadable(line)))
    return items


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
                warn(
                    f"warning: arg:{n} ({text}) is scored as text, but a file of that name exists: "
                    f"use --file {text} to score what it holds"
                )
            items.append(Item(f"arg:{n}", text))
    for path in args.file or []:
        items.append(read_file(path, warn))
    if not args.texts and not args.file:
        if sys.stdin is None or sys.stdin.isatty():
            raise PipelineError(
                "nothing to score: give review texts, --file PATH, or pipe reviews (one per line) on standard input"
            )
        items = read_stdin(warn)
    return items


def preview(text, width=60):
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_table(items, probs, out):
    """A readable table: one row per review (errors are reported on stderr instead)."""
    rows = [
        (str(i), label_of(p), f"{p:.3f}", item.source, preview(item.text))
        for i, (item, p) in enumerate(zip(items, probs), 1)
    ]
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
    """One review's JSON object: label, probability and the precision that computed it, or null ones
    with the reason (`error`)."""
    if item.error:
        return {"source": item.source, "label": None, "probability": None, "error": item.error}
    record = {
        "source": item.source,
        "label": label_of(prob),
        "probability": round(float(prob), 6),
        "precision": precision,
    }
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


class Parser(argparse.ArgumentParser):
    """argparse with a usage error as one line (exit 2) that says how to pass a review starting with '-'."""

    def error(self, message):
        hint = (
            "; a review that starts with '-' goes after '--' (imdb-predict [options] -- '-review text')"
            if "unrecognized arguments" in message
            else ""
        )
        self.exit(2, f"error: {message}{hint} (imdb-predict --help lists the options)\n")


def parse_args(argv):
    parser = Parser(
        prog="imdb-predict",
        description="Label movie reviews positive or negative with a trained checkpoint.",
        epilog="Reviews come from the arguments ('-' reads standard input), --file (one review per file: UTF-8, or "
        "UTF-16 with a byte-order mark), or standard input when nothing else is given (one review per line, "
        "blank lines skipped). Everything after '--' is review text, never an option: "
        "imdb-predict --json -- '-awful, truly'.",
        allow_abbrev=False,  # --js is an error, not --json: a script keeps working when an option is added
    )
    parser.add_argument("texts", nargs="*", help="review texts; '-' reads reviews from standard input, one per line")
    parser.add_argument("--file", action="append", metavar="PATH", help="a text file holding one review (repeatable)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="PATH", help="checkpoint file")
    which.add_argument(
        "--arch", metavar="NAME", help="use NAME's seed with the best validation accuracy (data/models/NAME/seed*.pt)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="use this training seed of --arch (or of the default model's architecture) instead",
    )
    parser.add_argument("--models-dir", default="data/models", help="where --arch looks (default data/models)")
    parser.add_argument(
        "--leaderboard", default="metrics/leaderboard.json", help="picks the default model: its best row's arch"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per review (JSON lines)")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="mark the most attended words (attention models; default --arch attention)",
    )
    parser.add_argument(
        "--top",
        type=int,
        default=5,
        help="most words marked per review with --explain, among those above average weight (default 5)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32 (default: as trained), bfloat16, int8, or auto: bfloat16 where the CPU (AMX, "
        "AVX512-BF16) or GPU has it, else float32",
    )
    parser.add_argument("--quantize", action="store_true", help="same as --precision int8 (dynamic quantization)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"reviews per batch (and lane; default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core this process may use)")
    parser.add_argument(
        "--lanes",
        type=int,
        default=0,
        help="on a CPU, score in this many threads of one core each (0 = auto: one per --threads "
        "thread when there are at least 4 batches a lane; 1 = off; --explain runs in one lane)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error (otherwise one line)"
    )
    args = parser.parse_args(argv)
    if args.quantize:
        args.precision = "int8"
    if args.batch_size < 1 or args.top < 1 or args.threads < 0 or args.lanes < 0:
        parser.error("--batch-size and --top must be at least 1, --threads and --lanes at least 0")
    if args.seed is not None and (args.seed < 0 or args.model):
        parser.error(
            "--seed must be >= 0 and picks among an architecture's seeds: "
            "use it with --arch (or alone), not with --model"
        )
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

    with standard_output() as out:
        write_results(args, items, good, probs, explanations, predictor.precision, out)
    for item in items:
        if item.error:
            warn(f"error: {item.source}: {item.error}")
    return 1 if len(good) < len(items) else 0


def write_results(args, items, good, probs, explanations, precision, out):
    if args.json:
        scored = {id(item): i for i, item in enumerate(good)}
        write_json_lines(
            [
                json_record(item)
                if item.error
                else json_record(
                    item, probs[scored[id(item)]], explanations[scored[id(item)]] if explanations else None, precision
                )
                for item in items
            ],
            out,
        )
    elif explanations is not None:
        bold = out.isatty() and "NO_COLOR" not in os.environ
        print_explanations(good, explanations, args.top, bold, out)
    elif good:
        print_table(good, probs, out)


def cli(argv=None):
    """Console entry point: one-line errors, exit 1 when anything could not be scored, 141 when the
    reader of standard output went away. An unexpected error is one line too, unless --debug."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in (argv[: argv.index("--")] if "--" in argv else argv)

    def guarded():
        try:
            return main(argv)
        except Exception as err:
            if isinstance(err, PipelineError) or debug or resource_error(err):  # run_main says these in one line
                raise
            summary = next(iter(str(err).splitlines()), "")
            raise PipelineError(
                f"unexpected {type(err).__name__}{': ' + summary if summary else ''} "
                "(rerun with --debug for the traceback, and report it)"
            ) from err

    sys.exit(run_main(guarded))


if __name__ == "__main__":
    cli()
