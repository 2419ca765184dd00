"""Stage report: HTML page and PNG of the attention model's most confident right and wrong test reviews."""

import argparse
import json

import numpy as np
import pyarrow.compute as pc

from imdb_rnn.ingest import read_table
from imdb_rnn.pipeline import PipelineError, run_main
from imdb_rnn.predict import Predictor, best_seed_checkpoint
from imdb_rnn.report import build_examples, write_report
from imdb_rnn.runtime import configure_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--arch", help="an attention-pooling architecture: its seed with the best validation accuracy is shown"
    )
    parser.add_argument("--model", help="an attention-pooling checkpoint (instead of --arch)")
    parser.add_argument("--models-dir", default="data/models", help="where --arch looks (default data/models)")
    parser.add_argument("--reviews", required=True, help="cleaned reviews (the clean stage)")
    parser.add_argument("--html", required=True)
    parser.add_argument("--png", required=True)
    parser.add_argument("--examples", type=int, default=6, help="reviews shown of each kind (right, wrong)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = every core this process may use)")
    args = parser.parse_args()
    if not (args.arch or args.model):
        raise PipelineError("name the model: --arch NAME (its best seed) or --model PATH")
    if args.examples < 1 or args.batch_size < 1:
        raise PipelineError("--examples and --batch-size must be at least 1")

    configure_cpu(args.threads)
    args.model = args.model or best_seed_checkpoint(args.arch, args.models_dir)
    predictor = Predictor.load(args.model, batch_size=args.batch_size)
    if not predictor.has_attention:
        raise PipelineError(
            f"{args.model} is a '{predictor.arch}' model without attention pooling: the report needs one"
        )
    table = read_table(args.reviews, columns=["id", "split", "label", "text"])
    # the words shown must be the words the model read: the text must have been cleaned as for training
    cleaned_with = (table.schema.metadata or {}).get(b"imdb_rnn.clean")
    if cleaned_with is None or json.loads(cleaned_with) != predictor.payload["clean"]:
        raise PipelineError(
            f"{args.reviews} was cleaned with {cleaned_with and json.loads(cleaned_with)}, "
            f"but {args.model} was trained on text cleaned with {predictor.payload['clean']}: "
            "rerun the pipeline (dvc repro)"
        )
    test = table.filter(pc.equal(table["split"], "test"))
    if test.num_rows == 0:
        raise PipelineError(f"{args.reviews} has no test reviews: check the ingest report")
    labels = (test["label"].to_numpy(zero_copy_only=False) == "pos").astype(np.int8)
    right, wrong, summary = build_examples(
        predictor, test["text"].to_pylist(), labels, test["id"].to_numpy(), args.examples
    )
    write_report(right, wrong, summary, args.html, args.png)
    print(
        f"report: {len(right)} right and {len(wrong)} wrong examples, {summary['test reviews scored']} test reviews "
        f"scored (accuracy {summary['test accuracy']}) -> {args.html}, {args.png}"
    )


if __name__ == "__main__":
    run_main(main)
