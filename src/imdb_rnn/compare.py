"""Compare the architectures: a leaderboard by test accuracy that tells signal from noise, and one summary picture.

Each architecture trains once per seed (params.yaml `seeds`). Its row is the seed with the best
validation accuracy (never chosen by test), with a bootstrap interval over the test reviews, the
mean and standard deviation over seeds, and McNemar's exact test against the top row on the same
reviews (significance.py).
"""

import csv
import shutil
from pathlib import Path

import numpy as np

from .cells import check_cell
from .config import arch_settings, architecture_section, is_architecture_section
from .inference import correct
from .params import (
    BASELINE,
    Param,
    best_by_validation,
    checkpoint_path,
    load_section,
    read_architectures,
    read_params,
    read_seeds,
    stage_of,
)
from .pipeline import PipelineError, atomic_path, load_npz, read_json, write_json, write_text
from .significance import accuracy_interval, adjust_p_values, mcnemar_exact, paired_difference

SCHEMA = {
    "bootstrap_resamples": Param(int, min=1000, max=1_000_000),
    "confidence": Param(float, min=0.5, max=0.999),
    "alpha": Param(float, min=0.0001, max=0.5),
    "correction": Param(str, choices=("holm", "none")),
    "seed": Param(int, min=0),
}

COLUMNS = [  # (key, Markdown heading) after the statistics columns
    ("val_accuracy", "validation accuracy"),
    ("val_minus_test", "validation − test"),
    ("accuracy_unseen", "accuracy, test reviews not in train"),
    ("f1", "F1"),
    ("roc_auc", "ROC AUC"),
    ("parameters", "parameters"),
    ("train_seconds", "training time"),
    ("train_tokens_per_second", "training tokens/s"),
    ("inference_reviews_per_second", "inference reviews/s"),
]


def same_reviews(a, b):
    """Whether two predictions files (dicts of evaluate.save_predictions' arrays) hold the same test
    reviews in the same order: review id and label together, since aclImdb numbers each label's
    reviews from 0. Files without ids (written before they were saved) never match."""
    return all(key in a and key in b and np.array_equal(a[key], b[key]) for key in ("review_ids", "labels"))


def check_same_reviews(a, b, first, second):
    """Raise PipelineError unless predictions `a` (of model `first`) and `b` (of `second`) hold the same
    test reviews in the same order (same_reviews): the one check that compare and tools/paired.py make."""
    if not same_reviews(a, b):
        raise PipelineError(
            f"{first} and {second} were not scored on the same test reviews in the same order: "
            "rerun dvc repro (a file without review ids is from before they were saved: dvc repro -f)"
        )


def _require(path, stage):
    if not Path(path).exists():
        raise PipelineError(f"{path} is missing: run `dvc repro {stage}` first")
    return path


def load_run(name, seed, paths, pretrained="none"):
    """One trained model (an architecture and a seed, or the baseline): its metrics and per-review predictions.

    Raises PipelineError for a missing input, metrics written for another architecture or seed, a
    recurrent model without a validation accuracy, or predictions whose accuracy is not the metrics'
    (files from different runs): each names the stage to rerun.
    """
    if name == BASELINE:
        where, evaluate, train = name, BASELINE, BASELINE
    else:
        where, evaluate, train = f"{name}/seed{seed}", stage_of("evaluate", name, seed), stage_of("train", name, seed)
    evaluation = read_json(_require(f"{paths['eval_dir']}/{where}.json", evaluate), "evaluation metrics")
    timing = read_json(_require(f"{paths['timing_dir']}/{where}.json", train), "training timing")
    predictions = load_npz(_require(f"{paths['predictions_dir']}/{where}.npz", evaluate), "test predictions")
    try:
        run = {
            "arch": name,
            "pretrained": pretrained,
            "seed": seed,
            "accuracy": evaluation["accuracy"],
            "val_accuracy": evaluation["val_accuracy"],
            "accuracy_unseen": evaluation["accuracy_unseen"],
            "f1": evaluation["f1"],
            "roc_auc": evaluation["roc_auc"],
            "parameters": evaluation["parameters"],
            "train_seconds": timing["train_seconds"],
            "train_tokens_per_second": timing["tokens_per_second"],
            "inference_reviews_per_second": evaluation["reviews_per_second"],
            "correct": correct(predictions["logits"], predictions["labels"]),
            "predictions": predictions,
        }
    except KeyError as err:
        raise PipelineError(f"the metrics of {name} (seed {seed}) lack {err}: rerun `dvc repro -f {evaluate}`")
    for key, expected in (("arch", name), ("seed", seed)):
        if key in evaluation and evaluation[key] != expected:
            raise PipelineError(
                f"{paths['eval_dir']}/{where}.json holds the metrics of {key} {evaluation[key]}, not {expected}: "
                f"rerun `dvc repro -f {evaluate}`"
            )
    if name != BASELINE and run["val_accuracy"] is None:
        raise PipelineError(
            f"the metrics of {name} (seed {seed}) record no validation accuracy to choose a seed by: "
            f"rerun `dvc repro -f {train}`"
        )
    # the ranking reads the metrics' accuracy, the intervals the predictions: they must be one run's
    if abs(run["correct"].mean() - run["accuracy"]) > 0.5 / len(run["correct"]):
        raise PipelineError(
            f"{paths['predictions_dir']}/{where}.npz gives accuracy {run['correct'].mean():.6f} but its metrics say "
            f"{run['accuracy']:.6f}: they come from different runs, rerun `dvc repro -f {evaluate}`"
        )
    return run


def architecture_row(name, seeds, paths, pretrained):
    """The leaderboard row of `name`: its best seed by validation, plus the spread over every seed."""
    runs = {seed: load_run(name, seed, paths, pretrained) for seed in seeds}
    chosen = best_by_validation({seed: run["val_accuracy"] for seed, run in runs.items()})
    accuracies = [run["accuracy"] for run in runs.values()]
    return {
        **runs[chosen],
        "checkpoint": str(checkpoint_path(paths["models_dir"], name, chosen)),
        "seeds": list(seeds),
        "accuracy_per_seed": {str(seed): run["accuracy"] for seed, run in runs.items()},
        "val_accuracy_per_seed": {str(seed): run["val_accuracy"] for seed, run in runs.items()},
        "accuracy_mean": round(float(np.mean(accuracies)), 6),
        "accuracy_sd": round(float(np.std(accuracies, ddof=1)), 6) if len(accuracies) > 1 else None,
    }


def leaderboard(rows, settings):
    """Rows ranked by test accuracy (best first; ties go to F1, then to the name), each with its
    bootstrap interval, its validation − test gap, and its paired comparison with the top row.

    `rows` carry `correct` (bool [N], the same N test reviews in the same order for all). Every row
    below the top is tested against it (McNemar's exact test, `p_value_vs_top`); the K p-values are
    adjusted together by settings["correction"] (`p_value_vs_top_adjusted`), and a row the top one is
    not shown better than (adjusted p >= alpha) gets `same_as_top` True.
    """
    ranked = sorted(rows, key=lambda r: (-r["accuracy"], -(r["f1"] or 0.0), r["arch"]))
    top = ranked[0]
    for row in ranked[1:]:
        check_same_reviews(row["predictions"], top["predictions"], row["arch"], top["arch"])
    resamples, confidence, seed = settings["bootstrap_resamples"], settings["confidence"], settings["seed"]
    board = []
    for rank, row in enumerate(ranked, 1):
        right = row.pop("correct")
        row.pop("predictions")
        low, high = accuracy_interval(right, resamples, confidence, seed)
        stats = {
            "test_reviews": int(len(right)),
            "accuracy_ci": [round(low, 6), round(high, 6)],
            "val_minus_test": None if row["val_accuracy"] is None else round(row["val_accuracy"] - row["accuracy"], 6),
        }
        if rank == 1:
            top_right = right
            stats.update(
                difference_to_top=None,
                difference_to_top_ci=None,
                p_value_vs_top=None,
                p_value_vs_top_adjusted=None,
                same_as_top=None,
            )
        else:
            difference, d_low, d_high = paired_difference(right, top_right, resamples, confidence, seed)
            stats.update(
                difference_to_top=round(difference, 6),
                difference_to_top_ci=[round(d_low, 6), round(d_high, 6)],
                p_value_vs_top=mcnemar_exact(right, top_right),
            )
        board.append({"rank": rank, **row, **stats})
    adjusted = adjust_p_values([row["p_value_vs_top"] for row in board[1:]], settings["correction"])
    for row, p_value in zip(board[1:], adjusted):
        row.update(
            p_value_vs_top=float(f"{row['p_value_vs_top']:.4g}"),
            p_value_vs_top_adjusted=float(f"{p_value:.4g}"),
            same_as_top=bool(p_value >= settings["alpha"]),
        )
    return board


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
    if key in ("accuracy", "f1", "roc_auc", "val_accuracy", "accuracy_unseen"):
        return f"{value:.4f}"
    if key == "val_minus_test":
        return f"{value:+.4f}"
    if key == "train_seconds":
        return format_duration(value)
    return f"{round(value):,}"


def statistics_cells(row):
    """The Markdown cells: test accuracy [interval], mean ± sd over seeds, difference to the top row [interval], p."""
    low, high = row["accuracy_ci"]
    cells = [f"{row['accuracy']:.4f} [{low:.4f}, {high:.4f}]"]
    n = len(row["seeds"])
    cells.append(
        "n/a"
        if n == 0
        else f"{row['accuracy_mean']:.4f} (1 seed)"
        if n == 1
        else f"{row['accuracy_mean']:.4f} ± {row['accuracy_sd']:.4f} ({n} seeds)"
    )
    if row["difference_to_top"] is None:
        cells += ["top", ""]
    else:
        d_low, d_high = row["difference_to_top_ci"]
        cells.append(f"{100 * row['difference_to_top']:+.2f} [{100 * d_low:+.2f}, {100 * d_high:+.2f}]")
        cells.append(f"{row['p_value_vs_top_adjusted']:.2g}" + (" ≈" if row["same_as_top"] else ""))
    return cells


def to_markdown(board, settings):
    confidence = f"{100 * settings['confidence']:g}%"
    rows_tested = max(len(board) - 1, 0)
    correction = (
        f"Holm-adjusted for the {rows_tested} rows tested against the top one (`compare.correction`; "
        "`p_value_vs_top` in leaderboard.json is the unadjusted one)"
        if settings["correction"] == "holm"
        else "each row tested against the top one alone, with no correction for the number of rows"
    )
    reviews = board[0]["test_reviews"] if board else 0
    lines = [
        f"# Leaderboard: {reviews:,} test reviews, sorted by accuracy",
        "",
        "Each architecture's row is its seed with the best validation accuracy (`seed`); test accuracy, on the same "
        f"{reviews:,} test reviews for every row, comes with a {confidence} "
        f"percentile bootstrap interval over them ({settings['bootstrap_resamples']:,} resamples). "
        "The difference to the top row is in accuracy points, with a paired bootstrap interval; "
        f"p is McNemar's exact test against the top row on the same reviews, {correction}, and ≈ marks a row "
        f"the top one is not shown better than (p ≥ {settings['alpha']:g}).",
        "",
        f"| rank | architecture | initial weights | seed | test accuracy [{confidence} CI] "
        "| test accuracy over seeds (mean ± sd) "
        f"| vs top, points [CI] | McNemar p{' (Holm)' if settings['correction'] == 'holm' else ''} | "
        + " | ".join(heading for _, heading in COLUMNS)
        + " |",
        "|---:|:---|:---|---:|---:|---:|---:|---:|" + "---:|" * len(COLUMNS),
    ]
    for row in board:
        initial = {"none": "random"}.get(row.get("pretrained", "none"), row.get("pretrained"))
        cells = (
            [str(row["rank"]), row["arch"], initial, "" if row["seed"] is None else str(row["seed"])]
            + statistics_cells(row)
            + [format_cell(key, row[key]) for key, _ in COLUMNS]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_curve(path, name, seed):
    """(epochs from 1, values) of a dvclive TSV (columns step and the metric)."""
    _require(path, stage_of("train", name, seed))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "step" not in rows[0] or len(rows[0]) < 2:
        raise PipelineError(
            f"{path} is not a dvclive metric file: rerun `dvc repro -f {stage_of('train', name, seed)}`"
        )
    metric = next(key for key in rows[0] if key not in ("step", "timestamp"))
    return [int(r["step"]) + 1 for r in rows], [float(r[metric]) for r in rows]


def plot(board, curves, path, confidence=0.95):
    """Test accuracy (with its interval, and every seed's accuracy) against training time, beside the
    validation-accuracy curve of each architecture's chosen seed; PNG at path.

    `curves` maps each architecture to (epochs, validation accuracies), in params.yaml order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(curves)  # params.yaml order: the same colour for an architecture from run to run
    palette = plt.get_cmap("tab20")
    colour = {
        name: palette(i % 20) for i, name in enumerate(names + [r["arch"] for r in board if r["arch"] not in curves])
    }
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), constrained_layout=True)

    # points carry their rank only and the legend names them: full labels overlap once models cluster
    for row in board:
        minutes = row["train_seconds"] / 60
        label = f"#{row['rank']} {row['arch']}  {row['parameters'] / 1e6:.2f}M params"
        if row["arch"] == BASELINE:
            label = f"#{row['rank']} {row['arch']} (bag of n-grams)"
        low, high = row["accuracy_ci"]
        left.errorbar(
            minutes,
            row["accuracy"],
            yerr=[[row["accuracy"] - low], [high - row["accuracy"]]],
            fmt="o",
            ms=8,
            capsize=4,
            color=colour[row["arch"]],
            zorder=3,
            label=label,
        )
        others = (
            [acc for seed, acc in row["accuracy_per_seed"].items() if seed != str(row["seed"])] if row["seeds"] else []
        )
        left.scatter([minutes] * len(others), others, s=18, marker="_", color=colour[row["arch"]], zorder=2)
        left.annotate(
            f"#{row['rank']}", (minutes, row["accuracy"]), xytext=(6, 3), textcoords="offset points", fontsize=8
        )
    left.set(
        xlabel="training time (minutes)",
        ylabel="test accuracy",
        title=f"Test accuracy (bars: {100 * confidence:g}% interval; dashes: other seeds) against training time",
    )
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


# the long-format curves compare writes for dvc.yaml's plots, one file each: {name: (source, x, y)}, the
# source under live_dir/<arch>/seed<seed>/plots/metrics/ (dvclive), or a folder of evaluate's curves
CURVES = {
    "val_accuracy": ("val/accuracy.tsv", "epoch", "accuracy"),
    "val_loss": ("val/loss.tsv", "epoch", "loss"),
    "train_loss": ("train/loss.tsv", "epoch", "loss"),
    "roc": ("roc_dir", "fpr", "tpr"),
    "precision_recall": ("pr_dir", "recall", "precision"),
}


def read_points(path, x, y, stage):
    """The (x, y) columns of one of evaluate's (or the baseline's) curve CSVs."""
    _require(path, stage)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or x not in rows[0] or y not in rows[0]:
        raise PipelineError(f"{path} has no {x} and {y} columns: rerun `dvc repro -f {stage}`")
    return [r[x] for r in rows], [r[y] for r in rows]


def write_curves(board, paths):
    """One CSV per entry of CURVES in paths['curves_dir'], long format (model, x, y): every leaderboard
    model's chosen seed, in rank order, so that one plot entry in dvc.yaml draws every architecture."""
    for name, (source, x, y) in CURVES.items():
        lines = [f"model,{x},{y}"]
        for row in board:
            arch, seed = row["arch"], row["seed"]
            if source.endswith("_dir"):
                where = arch if arch == BASELINE else f"{arch}/seed{seed}"
                xs, ys = read_points(
                    f"{paths[source]}/{where}.csv",
                    x,
                    y,
                    BASELINE if arch == BASELINE else stage_of("evaluate", arch, seed),
                )
            elif arch == BASELINE:
                continue  # no epochs
            else:
                xs, ys = read_curve(f"{paths['live_dir']}/{arch}/seed{seed}/plots/metrics/{source}", arch, seed)
            lines += [f"{arch},{a},{b}" for a, b in zip(xs, ys)]
        write_text(f"{paths['curves_dir']}/{name}.csv", "\n".join(lines) + "\n")


def best_model(board):
    """The leaderboard row that imdb-predict serves by default: the recurrent model with the best validation
    accuracy (test accuracy never chooses), ties to the better rank."""
    recurrent = [row for row in board if row["arch"] != BASELINE]
    return recurrent[best_by_validation({i: row["val_accuracy"] for i, row in enumerate(recurrent)})]


# what an architecture adds to its cell, and where that comes from (the chapter table's paper column)
ADDITIONS = {
    "bidirectional": "bidirectional: Schuster & Paliwal 1997",
    "stacked": "stacked: Graves, Mohamed & Hinton 2013",
    "attention": "attention pooling: Bahdanau, Cho & Bengio 2015",
}
SPEED_REFERENCE = "lstm"  # the chapter table's training speed is a ratio to this architecture's, from the same run


def read_chapter(params_path, known):
    """params.yaml's `chapter`: {heading: [architecture, ...]} in the chapter's order. Raises PipelineError for
    a malformed section or a name that no params.yaml section defines."""
    params = read_params(params_path)
    chapter = params.get("chapter") or {}
    if not isinstance(chapter, dict) or not all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in chapter.values()
    ):
        raise PipelineError(f"parameter chapter must map each heading to a list of architectures, got {chapter!r}")
    for names in chapter.values():
        for name in names:
            if not is_architecture_section(params.get(name)):
                raise PipelineError(
                    f"chapter names {name!r}, which no params.yaml section defines: pick among {', '.join(known)}"
                )
    return chapter


def chapter_table(params_path, board, chapter):
    """Markdown: one row per architecture under each of the chapter's headings: its params section, its
    cell's paper (and what the architecture adds to the cell), test accuracy over seeds (mean ± sd) and
    training tokens/s as a ratio to SPEED_REFERENCE's in the same run. An architecture not trained in
    this run has its row, marked so."""
    rows = {row["arch"]: row for row in board}
    reference = rows.get(SPEED_REFERENCE, {}).get("train_tokens_per_second")
    params = read_params(params_path)
    lines = [
        "| chapter | params section | paper | test accuracy, mean ± sd over seeds | training speed vs "
        f"{SPEED_REFERENCE} |",
        "|:---|:---|:---|---:|---:|",
    ]
    for heading, names in chapter.items():
        for name in names:
            if name in rows:
                settings = arch_settings(params_path, name)[0]
            else:  # not in this run's lists: its section as it stands
                settings = {**(params.get("arch_defaults") or {}), **architecture_section(params, name)}
            cell = check_cell(settings["cell"])
            papers = [cell.paper]
            if settings.get("bidirectional"):
                papers.append(ADDITIONS["bidirectional"])
            if settings.get("num_layers", 1) > 1 and not cell.stack:
                papers.append(ADDITIONS["stacked"])
            if settings.get("pooling") == "attention":
                papers.append(ADDITIONS["attention"])
            row = rows.get(name)
            if row is None:
                accuracy, speed = "not trained in this run", ""
            else:
                n = len(row["seeds"])
                accuracy = (
                    f"{row['accuracy_mean']:.4f} (1 seed)"
                    if n == 1
                    else f"{row['accuracy_mean']:.4f} ± {row['accuracy_sd']:.4f} ({n} seeds)"
                )
                speed = f"{row['train_tokens_per_second'] / reference:.2f}x" if reference else ""
            lines.append(f"| {heading} | `{name}` | {'; '.join(papers)} | {accuracy} | {speed} |")
    return "\n".join(lines) + "\n"


def compare_models(params_path, paths):
    """The compare stage: rank every architecture and the n-gram baseline by test accuracy, with the
    statistics that say which gaps are real; draw one summary picture.

    `paths` maps eval_dir, timing_dir, live_dir, roc_dir, pr_dir, models_dir, predictions_dir (inputs) and
    markdown, json, figure, curves_dir, best, chapter (outputs) to files, as dvc.yaml names them. Raises
    PipelineError on a missing or stale input.
    """
    settings = load_section(params_path, "compare", SCHEMA)
    names = read_architectures(params_path)
    seeds = read_seeds(params_path)
    # read everything first, so that a missing input leaves the old outputs untouched (when run outside DVC,
    # which removes a stage's outputs before running it)
    chapter = read_chapter(params_path, names)
    rows = [architecture_row(name, seeds, paths, pretrained) for name, pretrained in names.items()]
    baseline = {
        **load_run(BASELINE, None, paths, "n-grams"),
        "checkpoint": None,
        "seeds": [],
        "accuracy_per_seed": {},
        "val_accuracy_per_seed": {},
        "accuracy_mean": None,
        "accuracy_sd": None,
    }
    curves = {
        row["arch"]: read_curve(
            f"{paths['live_dir']}/{row['arch']}/seed{row['seed']}/plots/metrics/val/accuracy.tsv",
            row["arch"],
            row["seed"],
        )
        for row in rows
    }
    board = leaderboard(rows + [baseline], settings)

    plot(board, curves, paths["figure"], settings["confidence"])
    write_curves(board, paths)
    best = best_model(board)
    with atomic_path(paths["best"]) as tmp:  # DVC's model registry names this file (dvc.yaml: artifacts)
        shutil.copyfile(best["checkpoint"], tmp)
    write_text(paths["markdown"], to_markdown(board, settings))
    write_text(paths["chapter"], chapter_table(params_path, board, chapter))
    write_json(paths["json"], {"sorted_by": "accuracy", "seeds": seeds, "statistics": settings, "rows": board})
    top = board[0]
    same = [row["arch"] for row in board if row["same_as_top"]]
    print(
        f"compare: {len(board)} models over {len(seeds)} seed(s), top {top['arch']} "
        f"(test accuracy {top['accuracy']:.4f}"
        f"{'' if top['seed'] is None else ', seed ' + str(top['seed'])}); not shown worse than it: "
        f"{', '.join(same) or 'none'} -> {paths['markdown']}; best by validation: {best['arch']} seed {best['seed']} "
        f"-> {paths['best']}"
    )
