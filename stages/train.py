"""Stage train: train one architecture (arch_defaults and its own params.yaml section) and keep the best checkpoint."""

import argparse
import sys

from imdb_rnn.artifacts import run_main
from imdb_rnn.train import train_architecture

INPUTS = ("train", "valid", "meta", "vocab")
OUTPUTS = ("out", "metrics", "timing", "live", "resume")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", required=True, help="an architecture that params.yaml lists")
    parser.add_argument("--params", default="params.yaml")
    for name in INPUTS + OUTPUTS:
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--pretrained", help="the pretraining output a pretrained architecture starts from")
    args = parser.parse_args()
    paths = {name: getattr(args, name) for name in INPUTS + OUTPUTS + ("pretrained",)}
    train_architecture(args.arch, args.params, paths, relaunch=(__file__, sys.argv[1:]))


if __name__ == "__main__":
    run_main(main)
