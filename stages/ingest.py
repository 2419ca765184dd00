"""Stage ingest: read aclImdb from params ingest.source into one Parquet table and a report."""

from imdb_rnn.ingest import ingest
from imdb_rnn.pipeline import stage_main

if __name__ == "__main__":
    stage_main(__doc__, ingest, paths=("out", "report"))
