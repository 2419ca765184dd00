"""Stage baseline: an NBSVM-style n-gram logistic regression, C chosen on validation, scored on the test reviews."""

from imdb_rnn.baseline import fit_baseline
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(
        __doc__, fit_baseline, paths=("reviews", "train", "val", "metrics", "timing", "predictions", "roc", "pr")
    )
