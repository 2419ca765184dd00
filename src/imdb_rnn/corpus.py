"""From the reviews table to token arrays: the clean, vocab and tokenize stages.

The text functions themselves (cleaning, counting, ids, padding) are in text.py, shared with predict.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .ingest import read_table, write_table
from .params import Param, load_section
from .pipeline import PipelineError, save_npz, write_json, write_text
from .text import (
    CLEAN_SCHEMA,
    TOKENIZE_SCHEMA,
    build_vocab,
    check_truncation,
    clean_texts,
    count_words,
    encode,
    pad,
    read_vocab,
    split_words,
    vocab_sha256,
    without_known_words,
)

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


def clean_reviews(params_path, paths):
    """The clean stage: clean every review, count words per split, record review-length statistics.

    `paths` maps reviews, out, counts, stats, hist to files, as dvc.yaml names them.
    """

    settings = load_section(params_path, "clean", CLEAN_SCHEMA)
    table = read_table(paths["reviews"])
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

    write_table(table, paths["out"])
    write_text(paths["counts"], "\n".join(lines) + "\n")
    write_json(paths["stats"], stats)
    write_text(paths["hist"], "\n".join(csv) + "\n")
    print(f"clean: {table.num_rows} reviews, {merged.num_rows} distinct words in train+unsup -> {paths['out']}")


SCHEMA = {
    "max_size": Param(int, min=3),
    "min_freq": Param(int, min=1),
    # which reviews the words come from: the labelled training reviews, optionally the unlabelled too
    "sources": Param(list),
}


SOURCES = ("train", "unsup")


def build_vocabulary(params_path, paths):
    """The vocab stage: the vocabulary from the training (and optionally unlabelled) reviews' word counts,
    never the test set's.

    `paths` maps counts, out to files, as dvc.yaml names them.
    """

    params = load_section(params_path, "vocab", SCHEMA)
    sources = params["sources"]
    if not sources or any(s not in SOURCES for s in sources) or len(set(sources)) != len(sources):
        raise PipelineError(
            f"parameter vocab.sources must be a non-empty list drawn from {list(SOURCES)}, got {sources!r}"
        )
    try:
        counts = pacsv.read_csv(
            paths["counts"],
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"word": pa.string(), "train": pa.int64(), "unsup": pa.int64()}
            ),
        )
    except (FileNotFoundError, pa.ArrowInvalid) as err:
        raise PipelineError(
            f"word counts {paths['counts']} missing or unreadable ({err}): run the clean stage (dvc repro)"
        )
    total = counts[sources[0]]
    for s in sources[1:]:
        total = pa.compute.add(total, counts[s])
    table = pa.table({"word": counts["word"], "count": total}).sort_by([("count", "descending"), ("word", "ascending")])
    vocab = build_vocab(table, params["max_size"], params["min_freq"])
    write_text(paths["out"], "\n".join(vocab) + "\n")
    print(f"vocab: {len(vocab)} entries (0 = <pad>, 1 = <unk>) from {'+'.join(sources)} -> {paths['out']}")


def tokenize_reviews(params_path, paths):
    """The tokenize stage: every review as vocabulary ids, padded or truncated to seq_len, in
    train.npz, test.npz and unsup.npz (the unlabelled reviews, those whose text is also a test
    review's left out: semi-supervised training must never read test text).

    Each review also keeps its label (-1 unlabelled), rating (0 none), id, movie ("" if unknown)
    and text hash; the test reviews a flag `in_train` for a text that is also a training review's.
    A stage that does not read unsup.npz does not depend on it in dvc.yaml.

    `paths` maps reviews, vocab, out_dir and report (per split: reviews, truncated, unknown-token
    rate, reviews without words or known words, test reviews in train, unlabelled ones left out)
    to files, as dvc.yaml names them.
    """

    settings = check_truncation(load_section(params_path, "tokenize", TOKENIZE_SCHEMA))
    vocab = read_vocab(paths["vocab"])
    table = read_table(paths["reviews"])
    clean_meta = (table.schema.metadata or {}).get(b"imdb_rnn.clean")
    if clean_meta is None:
        raise PipelineError(f"{paths['reviews']} carries no cleaning settings: rerun the clean stage (dvc repro)")

    summary = {}
    arrays = {}
    for split in ("train", "test", "unsup"):
        part = table.filter(pc.equal(table["split"], split))
        if part.num_rows == 0 and split != "unsup":
            raise PipelineError(f"{paths['reviews']} has no {split} reviews: check the ingest report")
        words, lengths = split_words(part["text"])
        ids = encode(words, vocab)
        matrix, kept = pad(
            ids,
            lengths,
            settings["seq_len"],
            settings["pad_side"],
            settings["truncate_side"],
            settings.get("head_tokens", 0),
        )
        arrays[split] = dict(
            ids=matrix,
            lengths=kept,
            n_words=lengths.astype(np.int32),
            # 1 pos, 0 neg; -1 for the unlabelled reviews
            labels=np.select(
                [
                    part["label"].to_numpy(zero_copy_only=False) == "pos",
                    part["label"].to_numpy(zero_copy_only=False) == "neg",
                ],
                [1, 0],
                -1,
            ).astype(np.int8),
            ratings=pc.fill_null(part["rating"], 0).to_numpy().astype(np.int8),  # 0: unrated
            review_ids=part["id"].to_numpy().astype(np.int32),
            # for the split's grouping and duplicate checks; "" where ingest found no movie
            movies=np.asarray(pc.fill_null(part["movie"], "").to_pylist(), dtype=str).reshape(-1),
            text_hashes=part["text_hash"].to_numpy(),
        )
        summary[split] = {
            "reviews": part.num_rows,
            "truncated": int((lengths > settings["seq_len"]).sum()),
            "unknown_token_rate": round(float((ids == 1).mean()) if ids.size else 0.0, 4),
            # read as one <unk>; the split leaves such training reviews out, evaluate counts the test ones
            "no_words": int((lengths == 0).sum()),
            "no_known_words": int(without_known_words(matrix).sum()),
        }

    # the unlabelled reviews for semi-supervised terms: never a text that is also a test review's
    in_test = np.isin(arrays["unsup"]["text_hashes"], arrays["test"]["text_hashes"])
    arrays["unsup"] = {k: v[~in_test] for k, v in arrays["unsup"].items()}
    summary["unsup"]["left_out_as_test_texts"] = int(in_test.sum())
    # evaluate reports accuracy on the test reviews whose text is not also a training review's
    arrays["test"]["in_train"] = np.isin(arrays["test"]["text_hashes"], arrays["train"]["text_hashes"])
    summary["test"]["in_train"] = int(arrays["test"]["in_train"].sum())
    # meta.json, which every train stage reads, holds the settings alone: new unlabelled reviews
    # must not change a file the stages that never read them depend on
    meta = {
        "clean": json.loads(clean_meta),
        "tokenize": settings,
        "vocab_size": len(vocab),
        "vocab_sha256": vocab_sha256(vocab),
    }
    for split, arr in arrays.items():
        save_npz(f"{paths['out_dir']}/{split}.npz", **arr)
    write_json(f"{paths['out_dir']}/meta.json", meta)
    write_json(paths["report"], summary)
    print(f"tokenize: {summary} -> {paths['out_dir']}")
