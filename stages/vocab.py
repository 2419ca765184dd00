"""Stage vocab: build the vocabulary from the training reviews' word counts (never the test set)."""

import argparse

import pyarrow as pa
import pyarrow.csv as pacsv

from imdb_rnn.artifacts import PipelineError, run_main, write_text
from imdb_rnn.params import Param, load_section
from imdb_rnn.text import build_vocab

SCHEMA = {
    "max_size": Param(int, min=3),
    "min_freq": Param(int, min=1),
    # which reviews the words come from: the labelled training reviews, optionally the unlabelled too
    "sources": Param(list),
}
SOURCES = ("train", "unsup")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--counts", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    params = load_section(args.params, "vocab", SCHEMA)
    sources = params["sources"]
    if not sources or any(s not in SOURCES for s in sources) or len(set(sources)) != len(sources):
        raise PipelineError(f"parameter vocab.sources must be a non-empty list drawn from {list(SOURCES)}, got {sources!r}")
    try:
        counts = pacsv.read_csv(
            args.counts,
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types={"word": pa.string(), "train": pa.int64(), "unsup": pa.int64()}),
        )
    except (FileNotFoundError, pa.ArrowInvalid) as err:
        raise PipelineError(f"word counts {args.counts} missing or unreadable ({err}): run the clean stage (dvc repro)")
    total = counts[sources[0]]
    for s in sources[1:]:
        total = pa.compute.add(total, counts[s])
    table = pa.table({"word": counts["word"], "count": total}).sort_by([("count", "descending"), ("word", "ascending")])
    vocab = build_vocab(table, params["max_size"], params["min_freq"])
    write_text(args.out, "\n".join(vocab) + "\n")
    print(f"vocab: {len(vocab)} entries (0 = <pad>, 1 = <unk>) from {'+'.join(sources)} -> {args.out}")


if __name__ == "__main__":
    run_main(main)
