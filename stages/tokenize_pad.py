"""Stage tokenize: map every labelled review to vocabulary ids, padded or truncated to seq_len."""

import argparse
import json

import numpy as np
import pyarrow.compute as pc

from imdb_rnn.artifacts import PipelineError, run_main, save_npz, write_json
from imdb_rnn.ingest import read_table
from imdb_rnn.params import load_section
from imdb_rnn.text import TOKENIZE_SCHEMA, encode, pad, read_vocab, split_words, vocab_sha256, without_known_words


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reviews", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()

    settings = load_section(args.params, "tokenize", TOKENIZE_SCHEMA)
    vocab = read_vocab(args.vocab)
    table = read_table(args.reviews)
    clean_meta = (table.schema.metadata or {}).get(b"imdb_rnn.clean")
    if clean_meta is None:
        raise PipelineError(f"{args.reviews} carries no cleaning settings: rerun the clean stage (dvc repro)")

    summary = {}
    arrays = {}
    for split in ("train", "test"):
        part = table.filter(pc.equal(table["split"], split))
        if part.num_rows == 0:
            raise PipelineError(f"{args.reviews} has no {split} reviews: check the ingest report")
        words, lengths = split_words(part["text"])
        ids = encode(words, vocab)
        matrix, kept = pad(ids, lengths, settings["seq_len"], settings["pad_side"], settings["truncate_side"])
        arrays[split] = dict(
            ids=matrix,
            lengths=kept,
            n_words=lengths.astype(np.int32),
            labels=(part["label"].to_numpy(zero_copy_only=False) == "pos").astype(np.int8),
            ratings=part["rating"].to_numpy().astype(np.int8),
            review_ids=part["id"].to_numpy().astype(np.int32),
        )
        summary[split] = {
            "reviews": part.num_rows,
            "truncated": int((lengths > settings["seq_len"]).sum()),
            "unknown_token_rate": round(float((ids == 1).mean()) if ids.size else 0.0, 4),
            # read as one <unk>; the split leaves such training reviews out, evaluate counts the test ones
            "no_words": int((lengths == 0).sum()),
            "no_known_words": int(without_known_words(matrix).sum()),
        }

    meta = {
        "clean": json.loads(clean_meta),
        "tokenize": settings,
        "vocab_size": len(vocab),
        "vocab_sha256": vocab_sha256(vocab),
        "summary": summary,
    }
    for split, arr in arrays.items():
        save_npz(f"{args.out_dir}/{split}.npz", **arr)
    write_json(f"{args.out_dir}/meta.json", meta)
    print(f"tokenize: {summary} -> {args.out_dir}")


if __name__ == "__main__":
    run_main(main)
