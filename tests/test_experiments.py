"""The whole DVC workflow on a tiny archive: repro every stage, then an experiment on one architecture.

Runs the project's dvc.yaml and stages in a throwaway git + DVC repository (conftest's dvc_repo),
with tiny models and two architectures: the matrix stages work for any `architectures` list. A pretrained
twin (`extends`) is left to tests/test_parallel_repro.py (word2vec's stages and the leaderboard) and
tests/test_pipeline.py (a change to the base retrains it).
"""

import hashlib
import json
import os

import torch
from conftest import ran_stages as ran

ARCHITECTURES = ["rnn", "gru"]
SEEDS = [42, 7]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_key(tree, key):
    """Every value stored under `key` anywhere in nested dicts and lists."""
    if isinstance(tree, dict):
        return ([tree[key]] if key in tree else []) + [v for x in tree.values() for v in find_key(x, key)]
    if isinstance(tree, list):
        return [v for x in tree for v in find_key(x, key)]
    return []


def test_repro_then_experiment_retrains_only_the_changed_architecture(dvc_repo):
    params = dvc_repo.train_only(ARCHITECTURES, seeds=SEEDS, epochs=2, patience=2)  # no attention model: no report
    params["vocab"]["min_freq"] = 1
    dvc_repo.params = params
    dvc_repo.commit("pipeline")
    root = dvc_repo.root

    stages = ran(dvc_repo.dvc("repro").stdout)
    matrix = {f"{kind}@{arch}-{seed}" for kind in ("train", "evaluate") for arch in ARCHITECTURES for seed in SEEDS}
    data = {"stage_code", "ingest", "clean", "vocab", "tokenize", "split", "pretrain_embeddings", "pretrain_lm"}
    data.add("baseline")
    assert stages == data | {"compare"} | matrix
    board = json.loads((root / "metrics/leaderboard.json").read_text())
    assert sorted(row["arch"] for row in board["rows"]) == sorted(ARCHITECTURES + ["baseline"])
    for row in board["rows"]:  # every row has its interval, spread over both seeds and its test against the top row
        assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1]
        assert row["arch"] == "baseline" or (
            sorted(row["accuracy_per_seed"]) == ["42", "7"] and row["accuracy_sd"] is not None
        )
        assert (row["rank"] == 1) == (row["p_value_vs_top"] is None)
    assert (root / "metrics/compare.png").read_bytes().startswith(b"\x89PNG")
    for arch in ARCHITECTURES:
        for kind in ("eval", "roc", "precision_recall", "confusion"):
            assert sorted(p.stem for p in (root / "metrics" / kind / arch).glob("seed*.*")) == ["seed42", "seed7"]
    dvc_repo.commit("baseline")

    rnn_checkpoint = root / "data/models/rnn/seed42.pt"
    rnn_before = (sha256(rnn_checkpoint), rnn_checkpoint.stat().st_mtime_ns)
    gru_before = json.loads((root / "metrics/eval/gru/seed42.json").read_text())
    gru_stages = {f"{kind}@gru-{seed}" for kind in ("train", "evaluate") for seed in SEEDS} | {"compare"}

    # DVC writes 0.00001 as `lr: 1e-05`, a string to YAML 1.1 readers: the stage must read it as the number
    stages = ran(
        dvc_repo.dvc("exp", "run", "-n", "wider-gru", "-S", "gru.hidden_dim=12", "-S", "gru.lr=0.00001").stdout
    )
    assert stages == gru_stages
    assert "lr: 1e-05" in (root / "params.yaml").read_text()
    assert (sha256(rnn_checkpoint), rnn_checkpoint.stat().st_mtime_ns) == rnn_before  # rnn did not rerun

    gru_after = json.loads((root / "metrics/eval/gru/seed42.json").read_text())
    assert gru_after["parameters"] > gru_before["parameters"]
    diff = json.loads(dvc_repo.dvc("metrics", "diff", "--json").stdout)
    changed = {path.replace(os.sep, "/"): values for path, values in diff.items()}
    assert changed["metrics/eval/gru/seed42.json"]["parameters"] == {
        "old": gru_before["parameters"],
        "new": gru_after["parameters"],
        "diff": gru_after["parameters"] - gru_before["parameters"],
    }
    assert not any("rnn" in path for path in changed)  # nothing of the untouched architecture moved

    shown = json.loads(dvc_repo.dvc("exp", "show", "--json").stdout)
    assert "wider-gru" in json.dumps(shown)
    hidden = [
        v for section in find_key(shown, "gru") if isinstance(section, dict) for v in find_key(section, "hidden_dim")
    ]
    assert 12 in hidden

    # README "Experiments", command by command, on a second experiment beside the first
    stages = ran(dvc_repo.dvc("exp", "run", "-n", "narrow-gru", "-S", "gru.hidden_dim=6").stdout)
    assert stages == gru_stages
    gru_narrow = json.loads((root / "metrics/eval/gru/seed42.json").read_text())
    # dvc metrics diff <exp-a> <exp-b>
    between = json.loads(dvc_repo.dvc("metrics", "diff", "wider-gru", "narrow-gru", "--json").stdout)
    between = {path.replace(os.sep, "/"): values for path, values in between.items()}
    assert between["metrics/eval/gru/seed42.json"]["parameters"] == {
        "old": gru_after["parameters"],
        "new": gru_narrow["parameters"],
        "diff": gru_narrow["parameters"] - gru_after["parameters"],
    }
    assert not any("rnn" in path for path in between)

    # dvc exp show --drop/--keep: test accuracy per architecture and the params varied, nothing else
    table = dvc_repo.dvc(
        "exp", "show", "--drop", ".*", "--keep", r"Experiment|Created|metrics/eval/.*:accuracy$|gru\.(hidden_dim|lr)"
    ).stdout
    header, *rows = [line.split() for line in table.splitlines() if line.strip() and not line.strip().startswith("─")]
    accuracies = ["metrics/eval/baseline.json:accuracy"] + [
        f"metrics/eval/{arch}/seed{seed}.json:accuracy" for arch in ARCHITECTURES for seed in SEEDS
    ]
    assert sorted(header) == sorted(["Experiment", "Created", *accuracies, "gru.hidden_dim", "gru.lr"])
    shown = {word.strip("[]"): row for row in rows for word in row if word.startswith("[")}  # experiment -> its row
    # both ran with the 1e-05 the first -S set (-S changes the workspace's params.yaml)
    assert shown["wider-gru"][-2:] == ["12", "1e-05"] and shown["narrow-gru"][-2:] == ["6", "1e-05"]

    # dvc exp apply <exp> && git commit -am "...": the workspace becomes that experiment, outputs included
    dvc_repo.dvc("exp", "apply", "wider-gru")
    dvc_repo.git("commit", "-q", "-am", "wider gru")
    assert dvc_repo.params["gru"]["hidden_dim"] == 12
    assert json.loads((root / "metrics/eval/gru/seed42.json").read_text()) == gru_after
    assert torch.load(root / "data/models/gru/seed42.pt", weights_only=True)["model_config"]["hidden_dim"] == 12
    assert dvc_repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."

    # dvc metrics diff HEAD~1: the kept experiment against the commit before it
    diff = json.loads(dvc_repo.dvc("metrics", "diff", "HEAD~1", "--json").stdout)
    assert (
        diff[os.path.join("metrics", "eval", "gru", "seed42.json")]["parameters"]
        == changed["metrics/eval/gru/seed42.json"]["parameters"]
    )

    # dvc plots diff HEAD~1: learning curves, ROC and PR curves of both revisions in dvc_plots/index.html
    dvc_repo.dvc("plots", "diff", "HEAD~1")
    assert "HEAD~1" in (root / "dvc_plots/index.html").read_text()
    plots = json.loads(dvc_repo.dvc("plots", "diff", "HEAD~1", "--json").stdout)
    curves = [
        f"metrics/curves/{kind}.csv" for kind in ("val_accuracy", "val_loss", "train_loss", "roc", "precision_recall")
    ]
    for name in curves + ["metrics/confusion/gru/seed42.csv"]:
        assert [sorted(item["revisions"]) for item in plots["data"][name]] == [["HEAD~1", "workspace"]], name
    # what it could not load are the files of the architectures this tiny pipeline does not train
    missing = {error["source"] for error in plots["errors"]}
    assert not any(f"/{arch}/" in path or f"/{arch}." in path for path in missing for arch in ARCHITECTURES)


def test_a_train_stage_error_under_dvc_is_one_error_line(dvc_repo):
    dvc_repo.train_only(["gru"])
    dvc_repo.commit("pipeline")
    result = dvc_repo.dvc("exp", "run", "-S", "gru.lr=fast", "train", check=False)
    assert result.returncode != 0
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert ours == ["error: parameter gru.lr must be float, got 'fast'"], result.stderr
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr


def test_a_bad_seed_list_under_dvc_is_one_error_line(dvc_repo):
    dvc_repo.train_only(["gru"])
    dvc_repo.commit("pipeline")
    # through DVC's -S once; tests/test_params.py reads every kind of bad list with DVC's own override parser
    result = dvc_repo.dvc("exp", "run", "-S", "seeds=[42,abc]", "train", check=False)
    assert result.returncode != 0
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    says = "seeds in params.yaml must be a non-empty list of integers >= 0, got [42, 'abc']"
    assert len(ours) == 1 and says in ours[0], result.stdout + result.stderr
    assert "Traceback" not in result.stderr
