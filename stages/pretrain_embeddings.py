"""Stage pretrain_embeddings: Word2Vec vectors for the vocabulary, learnt on train + unlabelled reviews only."""

from imdb_rnn.embeddings import pretrain_embeddings
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(__doc__, pretrain_embeddings, paths=("reviews", "vocab", "out", "metrics"))
