"""Stage check_params: every section of params.yaml checked as its stage will check it, before any stage works."""

from imdb_rnn.check import check_params
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(__doc__, check_params, paths=("out", "settings"))
