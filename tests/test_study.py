"""research/tools/split_stopping_study.py: the stopping rules replayed on a full history, and a tiny
study end to end."""

import json
import sys

import numpy as np
from conftest import REPO_ROOT, run_script

sys.path.insert(0, str(REPO_ROOT / "research" / "tools"))
from split_stopping_study import replay  # noqa: E402


def history(*pairs):
    return [{"epoch": i, "val_loss": loss, "val_accuracy": acc} for i, (loss, acc) in enumerate(pairs, 1)]


def test_replay_keeps_the_epoch_each_rule_would_keep_and_stops_where_it_would_stop():
    # the grouped-split case the study exists for: loss bottoms out at epoch 2, accuracy still rises
    h = history((0.34, 0.851), (0.33, 0.850), (0.35, 0.862), (0.37, 0.864), (0.40, 0.860))
    assert replay(h, "val_loss", 2) == (2, 4)  # stops after two epochs without a lower loss
    assert replay(h, "val_accuracy", 2) == (4, 5)  # never two epochs without a higher accuracy before the end
    assert replay(h, "val_accuracy", 1) == (1, 2)
    assert replay(h, "val_loss", 10) == (2, 5)
    # ties keep the earlier epoch
    assert replay(history((0.3, 0.9), (0.3, 0.9)), "val_accuracy", 5) == (1, 2)


def test_a_tiny_study_runs_resumes_and_summarises(tiny_data, tmp_path):
    out = tmp_path / "study"
    args = (
        "--data",
        tiny_data / "data",
        "--params",
        tiny_data / "params.yaml",
        "--out",
        out,
        "--models",
        "baseline",
        "gru",
        "--seeds",
        "1",
        "2",
        "--threads",
        "1",
    )
    result = run_script(REPO_ROOT / "research/tools/split_stopping_study.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert runs == sorted(f"{g}-{m}-{s}.json" for g in ("review", "movie") for m in ("baseline", "gru") for s in (1, 2))
    run = json.loads((out / "runs/movie-gru-1.json").read_text())
    assert run["split"]["movie_overlap"]["movies_on_both_sides"] == 0
    assert len(run["history"]) == 1 and set(run["rules"]) == {"val_loss", "val_accuracy"}
    for rule in run["rules"].values():
        assert 0 <= rule["test_accuracy"] <= 1 and rule["epoch"] == 1
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {f"{g}/{m}" for g in ("review", "movie") for m in ("val_loss", "val_accuracy")}
    cell = summary["movie/val_loss"]
    assert cell["runs"] == 4 and set(cell["models"]) == {"baseline", "gru"}
    assert "| movie | val_loss | gru | 2 |" in (out / "summary.md").read_text()
    # a finished run is not run again
    (out / "runs/review-gru-1.json").write_text(json.dumps({**run, "seed": 99}))
    again = run_script(REPO_ROOT / "research/tools/split_stopping_study.py", *args, cwd=tmp_path)
    assert again.returncode == 0
    assert json.loads((out / "runs/review-gru-1.json").read_text())["seed"] == 99


def test_a_refit_trains_on_every_labelled_review_for_its_epochs_and_keeps_the_last(tiny_data, tmp_path):
    out = tmp_path / "study"
    args = (
        "--data",
        tiny_data / "data",
        "--params",
        tiny_data / "params.yaml",
        "--out",
        out,
        "--models",
        "gru",
        "--seeds",
        "1",
        "--threads",
        "1",
        "--refit",
    )
    result = run_script(REPO_ROOT / "research/tools/split_stopping_study.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == ["refit-gru-1.json"]  # once, whatever the groupings
    run = json.loads((out / "runs/refit-gru-1.json").read_text())
    labelled = np.load(tiny_data / "data/tokens/train.npz")
    assert run["train_reviews"] == int((labelled["lengths"] > 0).sum())  # both sides of the split
    assert run["epochs"] == len(run["history"]) and 0 <= run["test_accuracy"] <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refit/gru"]["seeds"] == [1]
    assert "| gru | 1 |" in (out / "summary.md").read_text()
    baseline = run_script(
        REPO_ROOT / "research/tools/split_stopping_study.py", *args[:7], "baseline", *args[8:], cwd=tmp_path
    )
    assert baseline.returncode == 2 and "recurrent models only" in baseline.stderr


def test_a_pretrained_architecture_starts_from_the_pretraining_output(tiny_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for part in ("tokens", "vocab", "clean", "split"):
        (data / part).symlink_to(tiny_data / "data" / part)
    made = run_script(
        "pretrain_embeddings",
        "--reviews",
        data / "clean/reviews.parquet",
        "--vocab",
        data / "vocab/vocab.txt",
        "--out",
        data / "pretrain/word2vec.pt",
        "--metrics",
        tmp_path / "w2v.json",
        "--params",
        tiny_data / "params.yaml",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    args = (
        "--data",
        data,
        "--params",
        tiny_data / "params.yaml",
        "--out",
        tmp_path / "study",
        "--models",
        "gru_w2v",
        "--seeds",
        "1",
        "--group-by",
        "review",
        "--threads",
        "1",
    )
    result = run_script(REPO_ROOT / "research/tools/split_stopping_study.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "study/runs/review-gru_w2v-1.json").read_text())["rules"]["val_loss"]["epoch"] == 1
    (data / "pretrain/word2vec.pt").unlink()  # without it: the train stage's own one-line error
    (tmp_path / "study/runs/review-gru_w2v-1.json").unlink()
    missing = run_script(REPO_ROOT / "research/tools/split_stopping_study.py", *args, cwd=tmp_path)
    assert missing.returncode == 1 and "word2vec.pt" in missing.stderr.splitlines()[-1]


def test_an_ablation_trains_each_variant_through_the_stage_and_resumes(tiny_data, tmp_path):
    out = tmp_path / "ablation"
    args = (
        "--arch",
        "rnn",
        "--params",
        tiny_data / "params.yaml",
        "--root",
        tiny_data,
        "--out",
        out,
        "--variant",
        "plain",
        "--variant",
        "vat",
        "vat_eps=0.05",
        "--variant",
        "mixed",
        "vat_eps=0.05",
        "entropy_weight=0.5",
        "unsup_ratio=1",
    )
    result = run_script(REPO_ROOT / "research/tools/ablation.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = (out / "summary.md").read_text()
    for name, change in (
        ("plain", "as params.yaml"),
        ("vat", "vat_eps=0.05"),
        ("mixed", "vat_eps=0.05, entropy_weight=0.5, unsup_ratio=1"),
    ):
        assert f"| {name} | {change} |" in table
        assert json.loads((out / name / "metrics.json").read_text())["arch"] == "rnn"
    checkpoints = {
        name: (tiny_data / f"data/ablation/rnn/{name}.pt").read_bytes() for name in ("plain", "vat", "mixed")
    }
    assert len(set(checkpoints.values())) == 3  # each term changed the training
    again = run_script(REPO_ROOT / "research/tools/ablation.py", *args, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("done before, skipped") == 3
    bad = run_script(
        REPO_ROOT / "research/tools/ablation.py",
        "--arch",
        "rnn",
        "--params",
        tiny_data / "params.yaml",
        "--root",
        tiny_data,
        "--out",
        tmp_path / "bad",
        "--variant",
        "x",
        "entropy_weight=1",
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "rnn.entropy_weight is 1 but rnn.unsup_ratio is 0" in bad.stderr.splitlines()[-1]


def test_a_study_of_weight_averaging_also_reports_the_same_run_without_it(tiny_data, tmp_path):
    from conftest import write_params

    from imdb_rnn.params import read_params

    runs = {}
    for ema in (0.0, 0.9):
        params = read_params(tiny_data / "params.yaml")
        params["gru"].update(ema_decay=ema, epochs=3, patience=3, dropout=0.2)
        write_params(tmp_path / f"params{ema}.yaml", params)
        out = tmp_path / f"study{ema}"
        result = run_script(
            REPO_ROOT / "research/tools/split_stopping_study.py",
            "--data",
            tiny_data / "data",
            "--params",
            tmp_path / f"params{ema}.yaml",
            "--out",
            out,
            "--models",
            "gru",
            "--seeds",
            "1",
            "--threads",
            "1",
            "--group-by",
            "movie",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        runs[ema] = json.loads((out / "runs/movie-gru-1.json").read_text())
    plain, averaged = runs[0.0], runs[0.9]
    assert "rules_raw" not in plain and len(averaged["history"]) == 3
    # the trained weights of the averaged run are the plain run's: the same kept epochs, validation and test figures
    assert averaged["rules_raw"] == plain["rules"]
    assert [row["val_loss_raw"] for row in averaged["history"]] == [row["val_loss"] for row in plain["history"]]
    assert averaged["rules"] != plain["rules"]
    table = (tmp_path / "study0.9/summary.md").read_text()
    diff = 100 * (averaged["rules"]["val_accuracy"]["test_accuracy"] - plain["rules"]["val_accuracy"]["test_accuracy"])
    assert "| movie | val_accuracy | gru | 1 |" in table and f"(1: {diff:+.2f})" in table
