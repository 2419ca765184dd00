"""The split and stopping study: which validation split and which stopping rule pick the better models?

For each split grouping (review, movie) and seed, the training reviews are split as the split stage
would (split.seed = the seed), then:
- NBSVM (the baseline stage's model) picks C on validation;
- each recurrent architecture trains for its full `epochs` with params.yaml's settings (train.seed =
  the seed) and no early stop, keeping every epoch's weights. Training does not depend on the
  stopping rule, so each rule {val_loss, val_accuracy} with the architecture's patience is replayed
  on the validation history: the epoch it keeps is exactly the one a run with that rule would keep.
  Only the epochs some rule keeps are scored on the official test reviews.
Test accuracy is recorded, never used for a choice. An architecture with `ema_decay` (weight
averaging) is also replayed on its trained weights' own validation figures (`rules_raw`): the same
run without the average, so the summary's last table gives averaged − trained seed by seed.

Each run writes OUT/runs/<group_by>-<model>-<seed>.json; a run whose file exists is skipped, so an
interrupted study resumes where it stopped. OUT/summary.json and OUT/summary.md aggregate whatever
runs exist.

    python research/tools/split_stopping_study.py --data data --params params.yaml \
        --out research/studies/split_stopping --models baseline gru bilstm --seeds 42 7 11 --workers 2

`--data` holds what `dvc repro split` (or `dvc exp run -S ingest.source=... split`) writes:
tokens/{train,test}.npz, tokens/meta.json, vocab/vocab.txt, clean/reviews.parquet; and
pretrain/{word2vec,lm}.pt for a pretrained architecture (`dvc repro pretrain_embeddings`).

`--refit` answers a question the split cannot: what do the reviews held out for validation add once
validation has chosen the settings and the epoch count? Each recurrent model trains on every labelled
training review for exactly its `epochs` (set them to the epoch the study kept) and its last epoch is
scored on test (OUT/runs/refit-<model>-<seed>.json; its own table in the summary). No validation
figure exists for such a run.

The seed study is the same machinery with the defaults' grouping and more architectures:

    python research/tools/split_stopping_study.py --group-by review --out research/studies/seeds --workers 2 \
        --models rnn lstm gru bilstm stacked_lstm attention bilstm_w2v_adv
"""

import argparse
import dataclasses
import json
import multiprocessing
import platform
import sys
import time
from itertools import combinations, product
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from imdb_rnn.baseline import (
    NAME as BASELINE,
)
from imdb_rnn.baseline import (
    SCHEMA as BASELINE_SCHEMA,
)
from imdb_rnn.baseline import (
    check_settings,
    part_of_split,
    score,
    select_C,
    select_rows,
)
from imdb_rnn.config import MONITORS, ModelConfig, arch_settings
from imdb_rnn.ingest import read_table
from imdb_rnn.params import load_section
from imdb_rnn.pipeline import PipelineError, load_npz, read_json, usable_cores, write_json, write_text
from imdb_rnn.split import GROUP_BY, split_indices, split_report
from imdb_rnn.split import SCHEMA as SPLIT_SCHEMA
from imdb_rnn.text import read_vocab, without_known_words

GAP = "val_minus_test"


def replay(history, monitor, patience):
    """(kept epoch, epochs run) under early stopping on `monitor` with `patience`, from a full validation history."""
    higher = MONITORS[monitor]
    best, stale = None, 0
    for row in history:
        if best is None or (row[monitor] > best[monitor] if higher else row[monitor] < best[monitor]):
            best, stale = row, 0
        else:
            stale += 1
        if stale >= patience:
            break
    return best["epoch"], row["epoch"]


def load_data(data_dir):
    train = load_npz(f"{data_dir}/tokens/train.npz", "tokenized training set")
    empty = without_known_words(train["ids"])  # as the split stage
    return {k: v[~empty] for k, v in train.items()}, load_npz(f"{data_dir}/tokens/test.npz", "tokenized test set")


def run_baseline(args, data, train_idx, val_idx):
    settings = check_settings(load_section(args.params, BASELINE, BASELINE_SCHEMA))
    table = read_table(f"{args.data}/clean/reviews.parquet", columns=["id", "split", "label", "text"])
    pool = part_of_split(table, "train")
    parts = [
        select_rows(pool, {k: data[k][idx] for k in ("review_ids", "labels")}, "study split", "reviews")
        for idx in (train_idx, val_idx)
    ]
    chosen = select_C(*parts, settings)
    test = part_of_split(table, "test")
    logits, _ = score(chosen, test)
    test_accuracy = float(np.mean((logits > 0) == (test.labels > 0.5)))
    row = {"epoch": None, "epochs_run": None, "val_accuracy": chosen.val_accuracy, "test_accuracy": test_accuracy}
    return {"C": chosen.C, "rules": {monitor: row for monitor in MONITORS}}


def run_recurrent(args, name, seed, data, test_data, train_idx, val_idx, refit=False):

    from imdb_rnn.batches import Reviews
    from imdb_rnn.inference import accuracy, predict_logits
    from imdb_rnn.runtime import configure_cpu, pick_device
    from imdb_rnn.tracker import snapshot
    from imdb_rnn.train import build_model, fit, pretrained_weights

    settings, config = arch_settings(args.params, name)
    config = dataclasses.replace(config, seed=seed, patience=config.epochs, threads=args.threads)
    meta = read_json(f"{args.data}/tokens/meta.json", "tokenizer settings")
    vocab = read_vocab(f"{args.data}/vocab/vocab.txt")
    seq_len = min(config.seq_len, meta["tokenize"]["seq_len"])
    if refit:
        # fit() scores a validation set every epoch; with none left, one batch of training reviews
        # stands in and its figures are not used: the last epoch is kept
        train_idx, val_idx = np.sort(np.concatenate([train_idx, val_idx])), val_idx[: config.eval_batch_size]
        config = dataclasses.replace(config, patience=config.epochs + 1)
    train, val = (
        Reviews.from_arrays({k: data[k][idx] for k in data}, meta["tokenize"], seq_len) for idx in (train_idx, val_idx)
    )
    test = Reviews.from_arrays(test_data, meta["tokenize"], seq_len)
    configure_cpu(config.threads)
    device = pick_device(config.device)
    model_config = ModelConfig.from_dict({**settings, "vocab_size": len(vocab)})
    # as the train stage: the pretraining stage's output, checked to fit
    weights = pretrained_weights(
        config, model_config, meta["vocab_sha256"], name, f"{args.data}/pretrain/{config.pretrained}.pt"
    )
    model = build_model(model_config, config, weights)
    states, raw_states = {}, {}

    def keep(row, module):
        if module is None:  # a row a resumed run replays (fit's contract); the study never resumes a fit
            return
        states[row["epoch"]] = snapshot(module)
        if module is not model:  # ema_decay: the trained weights too, those of the run without the average
            raw_states[row["epoch"]] = snapshot(model)

    _, history, _, timing = fit(model, train, val, config, device, log=keep, name=f"{name} seed {seed}")
    if refit:
        model.load_state_dict(states[len(history)])
        test_accuracy = accuracy(predict_logits(model, test, config.eval_batch_size, device), test.labels)
        return {
            "epochs": len(history),
            "train_reviews": len(train),
            "test_accuracy": test_accuracy,
            "history": [{k: row[k] for k in ("epoch", "train_loss", "train_accuracy", "seconds")} for row in history],
            "train_seconds": timing["train_seconds"],
        }

    def rules_of(states, suffix=""):
        rules, tested = {}, {}
        for monitor in MONITORS:
            rows = [{**row, monitor: row[monitor + suffix]} for row in history]
            epoch, run = replay(rows, monitor, settings["patience"])
            if epoch not in tested:
                model.load_state_dict(states[epoch])
                tested[epoch] = accuracy(predict_logits(model, test, config.eval_batch_size, device), test.labels)
            rules[monitor] = {
                "epoch": epoch,
                "epochs_run": run,
                "val_accuracy": history[epoch - 1]["val_accuracy" + suffix],
                "val_loss": history[epoch - 1]["val_loss" + suffix],
                "test_accuracy": tested[epoch],
            }
        return rules

    result = {
        "patience": settings["patience"],
        "history": history,
        "rules": rules_of(states),
        "train_seconds": timing["train_seconds"],
    }
    if raw_states:  # the same run without the weight average, for a paired comparison
        result["rules_raw"] = rules_of(raw_states, "_raw")
    return result


def run_one(job):
    args, group_by, name, seed = job
    path = Path(args.out) / "runs" / f"{'refit' if args.refit else group_by}-{name}-{seed}.json"
    if path.exists():
        return path
    data, test_data = load_data(args.data)
    split = load_section(args.params, "split", SPLIT_SCHEMA)
    train_idx, val_idx = split_indices(data, split["val_fraction"], seed, group_by)
    start = time.perf_counter()
    if args.refit:
        result = run_recurrent(args, name, seed, data, test_data, train_idx, val_idx, refit=True)
        write_json(
            path,
            {"refit": True, "model": name, "seed": seed, "seconds": round(time.perf_counter() - start, 1), **result},
        )
        print(
            f"{path.name}: {result['epochs']} epochs on {result['train_reviews']} reviews, "
            f"test {result['test_accuracy']:.4f}",
            flush=True,
        )
        return path
    if name == BASELINE:
        result = run_baseline(args, data, train_idx, val_idx)
    else:
        result = run_recurrent(args, name, seed, data, test_data, train_idx, val_idx)
    report = split_report(data, train_idx, val_idx)
    write_json(
        path,
        {
            "group_by": group_by,
            "model": name,
            "seed": seed,
            "split": report,
            "seconds": round(time.perf_counter() - start, 1),
            **result,
        },
    )
    for label, rules in (("", result["rules"]), (" (trained weights, without the average)", result.get("rules_raw"))):
        if rules:
            print(
                f"{path.name}{label}: "
                + ", ".join(
                    f"{m}: epoch {r['epoch']} val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f}"
                    for m, r in rules.items()
                ),
                flush=True,
            )
    return path


def summarise(out):
    """Aggregate every finished run into OUT/summary.json and OUT/summary.md."""
    runs = [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*.json"))]
    if not runs:
        raise PipelineError(f"no finished runs under {out}/runs")
    refits, runs = [r for r in runs if r.get("refit")], [r for r in runs if not r.get("refit")]
    cells, table = {}, []
    for group_by, monitor in product(GROUP_BY, MONITORS):
        chosen = [r for r in runs if r["group_by"] == group_by]
        if not chosen:
            continue
        per_model = {}
        for r in chosen:
            rule = r["rules"][monitor]
            per_model.setdefault(r["model"], []).append(
                {
                    **rule,
                    "seed": r["seed"],
                    GAP: rule["val_accuracy"] - rule["test_accuracy"],
                    "val_reviews_of_a_training_movie": r["split"]["movie_overlap"]["val_reviews_of_a_training_movie"],
                }
            )
        models = {}
        for model, rows in sorted(per_model.items()):
            models[model] = {
                "seeds": [row["seed"] for row in rows],
                "val_accuracy": float(np.mean([row["val_accuracy"] for row in rows])),
                "test_accuracy": float(np.mean([row["test_accuracy"] for row in rows])),
                "test_accuracy_sd": float(np.std([row["test_accuracy"] for row in rows], ddof=1))
                if len(rows) > 1
                else None,
                GAP: float(np.mean([row[GAP] for row in rows])),
                "epochs": [row["epoch"] for row in rows],
                "epochs_run": [row["epochs_run"] for row in rows],
                "val_reviews_of_a_training_movie": float(
                    np.mean([row["val_reviews_of_a_training_movie"] for row in rows])
                ),
            }
        rows = [row for rs in per_model.values() for row in rs]
        # does validation order the runs (every model, every seed) as test does?
        tau = (
            kendalltau([row["val_accuracy"] for row in rows], [row["test_accuracy"] for row in rows]).statistic
            if len(rows) > 2
            else None
        )
        by_val = max(models, key=lambda m: models[m]["val_accuracy"])
        by_test = max(models, key=lambda m: models[m]["test_accuracy"])
        # the leaderboard's question: is the gap between two models on validation the gap on test?
        pairs = [(a, b) for a, b in combinations(sorted(models), 2)]
        pair_error = (
            float(
                np.mean(
                    [
                        abs(
                            (models[a]["val_accuracy"] - models[b]["val_accuracy"])
                            - (models[a]["test_accuracy"] - models[b]["test_accuracy"])
                        )
                        for a, b in pairs
                    ]
                )
            )
            if pairs
            else None
        )
        cells[f"{group_by}/{monitor}"] = {
            "models": models,
            "kendall_tau_val_test": tau,
            "runs": len(rows),
            "best_by_val": by_val,
            "best_by_test": by_test,
            "pairwise_difference_error": pair_error,
            "mean_test_accuracy": float(np.mean([m["test_accuracy"] for m in models.values()])),
        }
        for model, m in models.items():
            sd = "" if m["test_accuracy_sd"] is None else f" ± {m['test_accuracy_sd']:.4f}"
            epochs_kept = ", ".join(
                f"{seed}: " + ("-" if e is None else str(e)) for seed, e in sorted(zip(m["seeds"], m["epochs"]))
            )
            table.append(
                f"| {group_by} | {monitor} | {model} | {len(m['seeds'])} | {m['val_accuracy']:.4f} "
                f"| {m['test_accuracy']:.4f}{sd} | {m[GAP]:+.4f} | {epochs_kept} "
                f"| {m['val_reviews_of_a_training_movie']:.3f} |"
            )
    lines = [
        "| group_by | stopping on | model | seeds | validation accuracy | test accuracy (mean ± sd) "
        "| validation − test | kept epoch per seed | val reviews of a training movie |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
        *table,
        "",
        "| group_by | stopping on | runs | mean test accuracy of the kept models "
        "| Kendall's tau, validation vs test accuracy over the runs "
        "| between-model differences: mean abs(validation − test) error, points "
        "| best model by validation | by test |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for key, cell in cells.items():
        tau = "n/a" if cell["kendall_tau_val_test"] is None else f"{cell['kendall_tau_val_test']:.3f}"
        pair = "n/a" if cell["pairwise_difference_error"] is None else f"{100 * cell['pairwise_difference_error']:.2f}"
        lines.append(
            f"| {key.replace('/', ' | ')} | {cell['runs']} | {cell['mean_test_accuracy']:.4f} | {tau} | {pair} "
            f"| {cell['best_by_val']} | {cell['best_by_test']} |"
        )
    averaged = [r for r in runs if "rules_raw" in r]
    if averaged:  # ema_decay: the averaged weights against the same runs' trained weights, seed by seed
        lines += [
            "",
            "| group_by | stopping on | model | seeds | validation: averaged − trained, points (mean; per seed) "
            "| test: averaged − trained, points (mean; per seed) | kept epoch, averaged / trained, per seed |",
            "|---|---|---|---:|---|---|---|",
        ]
        for group_by, monitor, model in sorted({(r["group_by"], m, r["model"]) for r in averaged for m in MONITORS}):
            rows = sorted(
                (r for r in averaged if (r["group_by"], r["model"]) == (group_by, model)), key=lambda r: r["seed"]
            )
            diffs = {
                key: [100 * (r["rules"][monitor][key] - r["rules_raw"][monitor][key]) for r in rows]
                for key in ("val_accuracy", "test_accuracy")
            }
            cells[f"{group_by}/{monitor}/averaged_minus_trained/{model}"] = {
                "seeds": [r["seed"] for r in rows],
                **diffs,
            }
            per_seed = " | ".join(
                f"{np.mean(d):+.2f} (" + ", ".join(f"{r['seed']}: {x:+.2f}" for r, x in zip(rows, d)) + ")"
                for d in diffs.values()
            )
            kept = ", ".join(
                f"{r['seed']}: {r['rules'][monitor]['epoch']} / {r['rules_raw'][monitor]['epoch']}" for r in rows
            )
            lines.append(f"| {group_by} | {monitor} | {model} | {len(rows)} | {per_seed} | {kept} |")
    if not runs:  # a refit study alone: its table only
        lines = []
    if refits:
        lines += [""] * bool(lines) + [
            "| refit on every labelled training review: model | seeds | epochs | test accuracy (mean ± sd) "
            "| per seed | training seconds |",
            "|---|---:|---:|---:|---|---:|",
        ]
        for model in sorted({r["model"] for r in refits}):
            rows = sorted((r for r in refits if r["model"] == model), key=lambda r: r["seed"])
            test = [r["test_accuracy"] for r in rows]
            sd = f" ± {np.std(test, ddof=1):.4f}" if len(rows) > 1 else ""
            cells[f"refit/{model}"] = {
                "seeds": [r["seed"] for r in rows],
                "epochs": [r["epochs"] for r in rows],
                "test_accuracy": test,
                "train_seconds": [r["train_seconds"] for r in rows],
            }
            per_seed = ", ".join(f"{r['seed']}: {r['test_accuracy']:.4f}" for r in rows)
            lines.append(
                f"| {model} | {len(rows)} | {', '.join(str(r['epochs']) for r in rows)} | {np.mean(test):.4f}{sd} "
                f"| {per_seed} | {', '.join(str(round(r['train_seconds'])) for r in rows)} |"
            )
    write_json(Path(out) / "summary.json", cells)
    write_text(Path(out) / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default="data", help="folder with tokens/, vocab/, clean/ as the pipeline writes them"
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="research/studies/split_stopping")
    parser.add_argument("--models", nargs="+", default=[BASELINE, "gru", "bilstm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 11])
    parser.add_argument("--group-by", nargs="+", default=list(GROUP_BY), choices=GROUP_BY)
    parser.add_argument("--workers", type=int, default=1, help="runs side by side, each with --threads threads")
    parser.add_argument("--threads", type=int, default=0, help="0: the cores shared out between the workers")
    parser.add_argument(
        "--refit",
        action="store_true",
        help="train recurrent models on every labelled training review for their epochs; score the last on test",
    )
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    if args.threads == 0:
        args.threads = max(1, usable_cores() // args.workers)
    print(
        f"study on {platform.processor() or platform.machine()}, {args.workers} worker(s) x {args.threads} thread(s)",
        flush=True,
    )
    if not args.summary_only:
        # model by model, in the order given: an interrupted study leaves whole models done
        jobs = [
            (args, g, m, s) for m in args.models for s in args.seeds for g in args.group_by[: 1 if args.refit else None]
        ]
        if args.refit and BASELINE in args.models:
            parser.error("--refit trains recurrent models only; drop baseline from --models")
        if args.workers > 1:
            with multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
                list(pool.imap_unordered(run_one, jobs))
        else:
            for job in jobs:
                run_one(job)
    summarise(args.out)


if __name__ == "__main__":
    try:
        main()
    except PipelineError as err:
        sys.exit(f"error: {err}")
