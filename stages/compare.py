"""Stage compare: rank every trained architecture and the n-gram baseline by test accuracy; draw one summary picture."""

from imdb_rnn.compare import compare_models
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(
        __doc__,
        compare_models,
        paths=(
            "eval-dir",
            "timing-dir",
            "live-dir",
            "roc-dir",
            "pr-dir",
            "models-dir",
            "predictions-dir",
            "markdown",
            "json",
            "figure",
            "curves-dir",
            "best",
            "chapter",
        ),
    )
