"""Stage evaluate: score one architecture's checkpoint on every official test review."""

from imdb_rnn.pipeline import stage_main, supervise

if __name__ == "__main__":
    supervise("evaluate.batch_size")  # the work runs in a child
    from imdb_rnn.evaluate import evaluate_checkpoint

    stage_main(
        __doc__,
        evaluate_checkpoint,
        paths=("checkpoint", "test", "meta", "metrics", "predictions", "roc", "pr", "confusion"),
        arch=True,
    )
