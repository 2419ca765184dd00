"""Stage vocab: build the vocabulary from the training reviews' word counts (never the test set)."""

from imdb_rnn.corpus import build_vocabulary
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(__doc__, build_vocabulary, paths=("counts", "out"))
