"""Stage train: train one architecture (its params.yaml section) and keep the best checkpoint.

Runs as one process, or, with train.processes N > 1, checks everything and then starts N
data-parallel copies of itself (distributed.launch, torchrun's launcher); rank 0 writes every output.
"""

import argparse
import sys

from imdb_rnn import distributed
from imdb_rnn.artifacts import PipelineError, read_json, run_main, write_json
from imdb_rnn.batches import Reviews
from imdb_rnn.params import load_section, read_architectures
from imdb_rnn.text import read_vocab
from imdb_rnn.train import (
    ARCH_SCHEMA,
    TRAIN_SCHEMA,
    Resume,
    build_model,
    fingerprint,
    fit,
    initialise,
    model_config,
    pick_device,
    save_checkpoint,
    seed_everything,
    configure_cpu,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", required=True, help="a params.yaml section describing the architecture")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/split/train.npz")
    parser.add_argument("--valid", default="data/split/valid.npz")
    parser.add_argument("--meta", default="data/tokens/meta.json")
    parser.add_argument("--vocab", default="data/vocab/vocab.txt")
    parser.add_argument("--out", help="checkpoint (default data/models/<arch>.pt)")
    parser.add_argument("--metrics", help="summary metrics (default metrics/train/<arch>.json)")
    parser.add_argument("--timing", help="wall time and speed (default metrics/timing/<arch>.json)")
    parser.add_argument("--live", help="dvclive folder (default metrics/live/<arch>)")
    parser.add_argument("--resume", help="training state after each epoch (default data/resume/<arch>.pt)")
    parser.add_argument("--word2vec", help="word vectors for pretrained: word2vec (pretrain_embeddings stage)")
    parser.add_argument("--lm", help="language model for pretrained: lm (pretrain_lm stage)")
    args = parser.parse_args()
    name = args.arch

    common = load_section(args.params, "train", TRAIN_SCHEMA)
    known = list(read_architectures(args.params))
    if name not in known:
        raise PipelineError(f"unknown architecture {name!r}: params.yaml lists {', '.join(known)} "
                            "(architectures and pretrained_architectures)")
    arch = load_section(args.params, name, ARCH_SCHEMA)
    if arch["pooling"] == "attention" and "attention_dim" not in arch:
        raise PipelineError(f"parameter {name}.attention_dim is missing: attention pooling needs it")

    meta = read_json(args.meta, "tokenizer settings")
    vocab = read_vocab(args.vocab)
    if len(vocab) != meta["vocab_size"]:
        raise PipelineError(f"{args.vocab} has {len(vocab)} entries but {args.meta} says {meta['vocab_size']}: rerun dvc repro")
    tokenize = dict(meta["tokenize"], seq_len=min(arch["max_len"], meta["tokenize"]["seq_len"]))
    train = Reviews.load(args.train, meta["tokenize"], tokenize["seq_len"], "training split")
    valid = Reviews.load(args.valid, meta["tokenize"], tokenize["seq_len"], "validation split")

    if common["processes"] > 1 and not distributed.in_worker():
        distributed.launch(common["processes"], __file__, sys.argv[1:])
        return
    configure_cpu(common["threads"])
    context = distributed.setup(pick_device(common["device"]).type)
    try:
        train_and_save(args, name, arch, common, meta, vocab, tokenize, train, valid, context)
    finally:
        distributed.shutdown(context)


def train_and_save(args, name, arch, common, meta, vocab, tokenize, train, valid, context):
    seed_everything(common["seed"])
    device = pick_device(common["device"], context.local_rank)
    config = model_config(arch, len(vocab))
    model = initialise(build_model(config), arch, name, word2vec=args.word2vec, lm=args.lm)
    start = fingerprint(arch, common, config, context.world, train.ids, train.lengths, train.labels,
                        valid.ids, valid.labels, *model.state_dict().values())
    resume = Resume(args.resume or f"data/resume/{name}.pt", start)

    from dvclive import Live

    live = Live(args.live or f"metrics/live/{name}", dvcyaml=False, save_dvc_exp=False, report=None) if context.main else None

    def log(row):
        if live:
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                split, metric = key.split("_")
                live.log_metric(f"{split}/{metric}", round(row[key], 6))
            live.next_step()

    try:
        state, history, summary, timing = fit(model, train, valid, arch, common, device, log=log, name=name,
                                              resume=resume, context=context)
    finally:
        if live:
            live.end()
    # DDP keeps every replica identical; the digest lets anyone check that from the logs
    print(f"{name}: rank {context.rank} of {context.world} ends with weights digest {fingerprint(*model.state_dict().values())[:16]}",
          flush=True)
    if not context.main:
        return
    summary = {"arch": name, **summary}
    save_checkpoint(
        args.out or f"data/models/{name}.pt",
        arch_name=name,
        config=config,
        state_dict=state,
        vocab=vocab,
        clean=meta["clean"],
        tokenize=tokenize,
        vocab_sha256=meta["vocab_sha256"],
        metrics={**summary, **timing},
    )
    write_json(args.metrics or f"metrics/train/{name}.json", summary)
    write_json(args.timing or f"metrics/timing/{name}.json", {"arch": name, **timing})
    print(f"{name}: best epoch {summary['best_epoch']}, val accuracy {summary['val_accuracy']:.4f}, "
          f"{timing['train_seconds']}s, {timing['tokens_per_second']:.0f} tokens/s")


if __name__ == "__main__":
    run_main(main)
