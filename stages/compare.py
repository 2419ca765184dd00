"""Stage compare: rank every trained architecture and the n-gram baseline by test accuracy; draw one summary picture."""

import argparse

from imdb_rnn.artifacts import run_main, write_json, write_text
from imdb_rnn.compare import leaderboard, load_row, plot, read_curve, to_markdown
from imdb_rnn.params import BASELINE, read_architectures


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--eval-dir", required=True)
    parser.add_argument("--timing-dir", required=True)
    parser.add_argument("--live-dir", required=True)
    parser.add_argument("--models-dir", required=True, help="where the checkpoints are: each row names its own")
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--figure", required=True)
    args = parser.parse_args()

    names = read_architectures(args.params)
    # read everything first, so that a missing input leaves the old outputs untouched
    rows = [dict(load_row(name, args.eval_dir, args.timing_dir, pretrained), checkpoint=f"{args.models_dir}/{name}.pt")
            for name, pretrained in names.items()]
    board = leaderboard(rows + [dict(load_row(BASELINE, args.eval_dir, args.timing_dir, "n-grams"), checkpoint=None)])
    curves = {name: read_curve(f"{args.live_dir}/{name}/plots/metrics/val/accuracy.tsv", name) for name in names}

    plot(board, curves, args.figure)
    write_text(args.markdown, to_markdown(board))
    write_json(args.json, {"sorted_by": "accuracy", "rows": board})
    best = board[0]
    print(f"compare: {len(board)} models, best {best['arch']} (test accuracy {best['accuracy']:.4f}) -> {args.markdown}")


if __name__ == "__main__":
    run_main(main)
