"""Stage pretrain_lm: a recurrent language model on the training and unlabelled reviews.

Its encoder (embedding and recurrent layers) initialises every architecture whose params say
`pretrained: lm`. The test reviews are never read."""

from imdb_rnn.pipeline import stage_main, supervise

if __name__ == "__main__":
    supervise("pretrain_lm.batch_size, bptt or hidden_dim")  # the work runs in a child
    from imdb_rnn.lm import pretrain_lm

    stage_main(__doc__, pretrain_lm, paths=("reviews", "vocab", "out", "metrics"))
