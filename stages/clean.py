"""Stage clean: clean every review, count words per split, record review-length statistics."""

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imdb_rnn.artifacts import run_main, write_json, write_text
from imdb_rnn.ingest import read_table, write_table
from imdb_rnn.params import load_section
from imdb_rnn.text import CLEAN_SCHEMA, clean_texts, count_words, split_words

HIST_BIN, HIST_MAX = 25, 1500  # words; the last bin holds every longer review


def length_stats(lengths):
    q = np.percentile(lengths, [50, 90, 99]) if len(lengths) else [0, 0, 0]
    return {
        "reviews": int(len(lengths)),
        "mean": round(float(np.mean(lengths)), 2) if len(lengths) else 0.0,
        "median": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "max": int(np.max(lengths)) if len(lengths) else 0,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reviews", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--counts", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--hist", required=True)
    args = parser.parse_args()

    settings = load_section(args.params, "clean", CLEAN_SCHEMA)
    table = read_table(args.reviews)
    cleaned = clean_texts(table["text"], settings)
    words, lengths = split_words(cleaned)
    table = table.set_column(table.schema.get_field_index("text"), "text", cleaned)
    table = table.append_column("n_words", pa.array(lengths, pa.int32()))
    # later stages apply exactly these settings to new text: carry them inside the table
    table = table.replace_schema_metadata({"imdb_rnn.clean": json.dumps(settings)})

    # word counts per split; the test split is never counted, so nothing fitted can see it
    split = table["split"].to_numpy(zero_copy_only=False)
    merged = None
    for name in ("train", "unsup"):
        in_split = np.repeat(split == name, lengths)  # one flag per word
        counts = count_words(words.filter(pa.array(in_split))).rename_columns(["word", name])
        merged = counts if merged is None else merged.join(counts, "word", join_type="full outer")
    merged = merged.set_column(1, "train", pc.fill_null(merged["train"], 0))
    merged = merged.set_column(2, "unsup", pc.fill_null(merged["unsup"], 0))
    merged = merged.sort_by([("train", "descending"), ("unsup", "descending"), ("word", "ascending")])
    lines = ["word\ttrain\tunsup"] + [
        f"{w}\t{a}\t{b}" for w, a, b in zip(*(merged[c].to_pylist() for c in ("word", "train", "unsup")))
    ]

    stats, hist = {}, {}
    edges = np.arange(0, HIST_MAX + HIST_BIN, HIST_BIN)
    for name in ("train", "test", "unsup"):
        lens = lengths[split == name]
        stats[name] = length_stats(lens)
        hist[name] = np.bincount(np.minimum(lens, HIST_MAX) // HIST_BIN, minlength=len(edges))[: len(edges)]
    csv = ["words,train,test,unsup"] + [
        f"{edge},{hist['train'][i]},{hist['test'][i]},{hist['unsup'][i]}" for i, edge in enumerate(edges)
    ]

    write_table(table, args.out)
    write_text(args.counts, "\n".join(lines) + "\n")
    write_json(args.stats, stats)
    write_text(args.hist, "\n".join(csv) + "\n")
    print(f"clean: {table.num_rows} reviews, {merged.num_rows} distinct words in train+unsup -> {args.out}")


if __name__ == "__main__":
    run_main(main)
