"""Stage split: seeded, shuffled, stratified train/validation split of the training reviews."""

from imdb_rnn.pipeline import stage_main
from imdb_rnn.split import split_reviews

if __name__ == "__main__":
    stage_main(__doc__, split_reviews, paths=("train", "out-dir", "report"))
