"""Compare the architectures: a leaderboard by test accuracy and one summary picture."""

import csv
from pathlib import Path

from .artifacts import atomic_path, PipelineError, read_json, write_json, write_text
from .params import BASELINE, read_architectures, stage_of

COLUMNS = [  # (key, Markdown heading)
    ("accuracy", "test accuracy"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("parameters", "parameters"),
    ("train_seconds", "training time"),
    ("train_tokens_per_second", "training tokens/s"),
    ("inference_reviews_per_second", "inference reviews/s"),
]


def _require(path, stage):
    if not Path(path).exists():
        raise PipelineError(f"{path} is missing: run `dvc repro {stage}` first")
    return path


def load_row(name, eval_dir, timing_dir, pretrained="none"):
    """One leaderboard row from an architecture's evaluation and training-timing metrics."""
    evaluate, train = (BASELINE, BASELINE) if name == BASELINE else (stage_of("evaluate", name), stage_of("train", name))
    evaluation = read_json(_require(f"{eval_dir}/{name}.json", evaluate), "evaluation metrics")
    timing = read_json(_require(f"{timing_dir}/{name}.json", train), "training timing")
    try:
        return {
            "arch": name,
            "pretrained": pretrained,
            "accuracy": evaluation["accuracy"],
            "f1": evaluation["f1"],
            "roc_auc": evaluation["roc_auc"],
            "parameters": evaluation["parameters"],
            "train_seconds": timing["train_seconds"],
            "train_tokens_per_second": timing["tokens_per_second"],
            "inference_reviews_per_second": evaluation["reviews_per_second"],
        }
    except KeyError as err:
        stage = BASELINE if name == BASELINE else stage_of("evaluate", name)
        raise PipelineError(f"the metrics of {name} lack {err}: rerun `dvc repro -f {stage}`")


def leaderboard(rows):
    """Rows ranked by test accuracy (best first); ties go to F1, then to the name."""
    ranked = sorted(rows, key=lambda r: (-r["accuracy"], -(r["f1"] or 0.0), r["arch"]))
    return [{"rank": i, **row} for i, row in enumerate(ranked, 1)]


def format_duration(seconds):
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_cell(key, value):
    if value is None:
        return "n/a"
    if key in ("accuracy", "f1", "roc_auc"):
        return f"{value:.4f}"
    if key == "train_seconds":
        return format_duration(value)
    return f"{round(value):,}"


def to_markdown(board):
    lines = [
        "# Leaderboard: test reviews, sorted by accuracy",
        "",
        "| rank | architecture | initial weights | " + " | ".join(heading for _, heading in COLUMNS) + " |",
        "|---:|:---|:---|" + "---:|" * len(COLUMNS),
    ]
    for row in board:
        cells = [str(row["rank"]), row["arch"], row.get("pretrained", "none")] + [format_cell(key, row[key]) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_curve(path, name):
    """(epochs from 1, values) of a dvclive TSV (columns step and the metric)."""
    _require(path, stage_of("train", name))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "step" not in rows[0] or len(rows[0]) < 2:
        raise PipelineError(f"{path} is not a dvclive metric file: rerun `dvc repro -f {stage_of('train', name)}`")
    metric = next(key for key in rows[0] if key not in ("step", "timestamp"))
    return [int(r["step"]) + 1 for r in rows], [float(r[metric]) for r in rows]


def plot(board, curves, path):
    """Test accuracy against training time, beside every validation-accuracy curve; PNG at path.

    `curves` maps each architecture to (epochs, validation accuracies), in params.yaml order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)  # params.yaml order: the same colour for an architecture from run to run
    palette = plt.get_cmap("tab20")
    colour = {name: palette(i % 20) for i, name in enumerate(names + [r["arch"] for r in board if r["arch"] not in curves])}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)

    # points carry their rank only and the legend names them: full labels overlap once models cluster
    for row in board:
        minutes = row["train_seconds"] / 60
        label = f"#{row['rank']} {row['arch']}  {row['parameters'] / 1e6:.2f}M params"
        if row["arch"] == BASELINE:
            label = f"#{row['rank']} {row['arch']} (bag of n-grams)"
        left.scatter(minutes, row["accuracy"], s=80, color=colour[row["arch"]], zorder=3, label=label)
        left.annotate(f"#{row['rank']}", (minutes, row["accuracy"]), xytext=(6, 3), textcoords="offset points", fontsize=8)
    left.set(xlabel="training time (minutes)", ylabel="test accuracy", title="Test accuracy against training time")
    left.margins(x=0.1, y=0.1)
    left.set_xlim(left=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=8, loc="lower right")

    for name in names:
        epochs, values = curves[name]
        right.plot(epochs, values, marker="o", color=colour[name], label=name)
    right.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy per epoch")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.grid(alpha=0.3)
    right.legend(fontsize=9)

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def compare_models(params_path, paths):
    """The compare stage: rank every architecture and the n-gram baseline by test accuracy; draw one summary picture.

    `paths` maps eval_dir, timing_dir, live_dir, models_dir, markdown, json, figure to files, as dvc.yaml names them.
    """

    names = read_architectures(params_path)
    # read everything first, so that a missing input leaves the old outputs untouched
    rows = [dict(load_row(name, paths['eval_dir'], paths['timing_dir'], pretrained), checkpoint=f"{paths['models_dir']}/{name}.pt")
            for name, pretrained in names.items()]
    board = leaderboard(rows + [dict(load_row(BASELINE, paths['eval_dir'], paths['timing_dir'], "n-grams"), checkpoint=None)])
    curves = {name: read_curve(f"{paths['live_dir']}/{name}/plots/metrics/val/accuracy.tsv", name) for name in names}

    plot(board, curves, paths['figure'])
    write_text(paths['markdown'], to_markdown(board))
    write_json(paths['json'], {"sorted_by": "accuracy", "rows": board})
    best = board[0]
    print(f"compare: {len(board)} models, best {best['arch']} (test accuracy {best['accuracy']:.4f}) -> {paths['markdown']}")
