"""Stage ingest: read aclImdb from params ingest.source into one Parquet table and a report."""

import argparse

from imdb_rnn.artifacts import run_main, write_json
from imdb_rnn.ingest import SCHEMA, read_reviews, write_table
from imdb_rnn.params import load_section


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()

    params = load_section(args.params, "ingest", SCHEMA)
    table, report = read_reviews(params["source"], params["download_dir"], params["md5"])
    write_table(table, args.out)
    write_json(args.report, report)
    print(f"ingest: {report['reviews']} reviews {report['per_split']} -> {args.out}")


if __name__ == "__main__":
    run_main(main)
