"""Stage pretrain_lm: a recurrent language model on the training and unlabelled reviews.

Its encoder (embedding and recurrent layers) initialises every architecture whose params say
`pretrained: lm`. The test reviews are never read.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from imdb_rnn.artifacts import PipelineError, run_main, write_json
from imdb_rnn.pretrained import save_pretrained
from imdb_rnn.ingest import read_table
from imdb_rnn.lm import SCHEMA, LanguageModel, check_settings, pretrain, sequences
from imdb_rnn.params import load_section
from imdb_rnn.text import encode, read_vocab, split_words, vocab_sha256
from imdb_rnn.runtime import configure_cpu, pick_device, seed_everything

def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--reviews", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--metrics", required=True)
    args = parser.parse_args()

    params = load_section(args.params, "pretrain_lm", SCHEMA)
    vocab = read_vocab(args.vocab)
    cutoffs = check_settings(params, len(vocab))
    table = read_table(args.reviews)
    text = table.filter(pc.is_in(table["split"], value_set=pa.array(params["sources"])))["text"]
    if len(text) == 0:
        raise PipelineError(f"{args.reviews} has no {' or '.join(params['sources'])} reviews: check the ingest report")
    words, _ = split_words(text)
    stream = encode(words, vocab)  # reviews one after another, as one running text

    rows = sequences(stream, params["bptt"])
    order = np.random.default_rng(params["seed"]).permutation(len(rows))
    n_val = max(1, int(len(rows) * params["val_fraction"]))
    if n_val >= len(rows):
        raise PipelineError(f"{len(rows)} sequences are too few to hold out {n_val} for validation: lower pretrain_lm.bptt")
    val_rows, train_rows = rows[order[:n_val]], rows[order[n_val:]]

    configure_cpu(params["threads"])
    seed_everything(params["seed"])
    device = pick_device(params["device"])
    config = {k: params[k] for k in ("cell", "num_layers", "embed_dim", "hidden_dim", "dropout")}
    config.update(vocab_size=len(vocab), cutoffs=cutoffs)
    model = LanguageModel(**config)
    print(f"language model: {len(stream):,} tokens from {len(text):,} reviews ({', '.join(params['sources'])}), "
          f"{len(train_rows):,} training and {len(val_rows):,} validation sequences of {params['bptt']}", flush=True)
    history = pretrain(model, train_rows, val_rows, params, device)

    save_pretrained(args.out, "lm", config, model.encoder_state(), vocab_sha256(vocab), history=history)
    write_json(args.metrics, {
        "corpus_tokens": int(len(stream)),
        "reviews": int(len(text)),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_val_loss": history[-1]["val_loss"],
        "final_val_perplexity": history[-1]["val_perplexity"],
        "seconds": round(sum(r["seconds"] for r in history), 1),
        "epochs": history,
    })


if __name__ == "__main__":
    run_main(main)
