"""Stage clean: clean every review, count words per split, record review-length statistics."""

from imdb_rnn.corpus import clean_reviews
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(__doc__, clean_reviews, paths=("reviews", "out", "counts", "stats", "hist"))
