"""Stage split: seeded, shuffled, stratified train/validation split of the training reviews."""

import argparse

from imdb_rnn.artifacts import load_npz, run_main, save_npz, write_json
from imdb_rnn.params import load_section
from imdb_rnn.split import SCHEMA, stratified_split
from imdb_rnn.text import without_known_words


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()

    params = load_section(args.params, "split", SCHEMA)
    data = load_npz(args.train, "tokenized training set")
    # a review with no vocabulary word teaches nothing and tells nothing about a model: leave it out
    empty = without_known_words(data["ids"])
    data = {k: v[~empty] for k, v in data.items()}
    labels = data["labels"]
    train_idx, valid_idx = stratified_split(labels, params["val_fraction"], params["seed"])
    report = {}
    for name, idx in (("train", train_idx), ("valid", valid_idx)):
        save_npz(f"{args.out_dir}/{name}.npz", **{k: v[idx] for k, v in data.items()})
        report[name] = {
            "reviews": int(len(idx)),
            "pos": int(labels[idx].sum()),
            "neg": int(len(idx) - labels[idx].sum()),
            "pos_fraction": round(float(labels[idx].mean()), 4),
        }
    report["balanced"] = abs(report["train"]["pos_fraction"] - report["valid"]["pos_fraction"]) < 0.01
    report["dropped_without_known_words"] = int(empty.sum())
    write_json(args.report, report)
    print(f"split: {report}")


if __name__ == "__main__":
    run_main(main)
