"""Stage tokenize: map every labelled review to vocabulary ids, padded or truncated to seq_len."""

from imdb_rnn.corpus import tokenize_reviews
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(__doc__, tokenize_reviews, paths=("reviews", "vocab", "out-dir", "report"))
