"""Stage train: train one architecture (arch_defaults and its own params.yaml section) with one seed
and keep the best checkpoint."""

from imdb_rnn.pipeline import stage_main, supervise

if __name__ == "__main__":
    supervise("the architecture's batch_size or hidden_dim, or train.eval_batch_size")  # the work runs in a child
    from imdb_rnn.train import train_architecture

    stage_main(
        __doc__,
        train_architecture,
        paths=("train", "val", "meta", "vocab", "out", "metrics", "timing", "live", "resume"),
        optional=("pretrained", "unlabelled"),
        arch=True,
        seed=True,
    )
