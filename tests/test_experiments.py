"""The whole DVC workflow on a tiny archive: repro every stage, then an experiment on one architecture.

Runs the project's dvc.yaml and stages in a throwaway git + DVC repository (conftest's dvc_repo),
with tiny models and two architectures: the matrix stages work for any `architectures` list.
"""

import hashlib
import json
import os

ARCHITECTURES = ["rnn", "gru"]
PRETRAINED = {"gru_w2v": "word2vec"}  # the same cell as gru, started from the word2vec stage's vectors


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_key(tree, key):
    """Every value stored under `key` anywhere in nested dicts and lists."""
    if isinstance(tree, dict):
        return ([tree[key]] if key in tree else []) + [v for x in tree.values() for v in find_key(x, key)]
    if isinstance(tree, list):
        return [v for x in tree for v in find_key(x, key)]
    return []


def ran(output):
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


def test_repro_then_experiment_retrains_only_the_changed_architecture(dvc_repo):
    params = dvc_repo.params
    params["architectures"] = ARCHITECTURES
    params["pretrained_architectures"] = PRETRAINED
    params["report"]["architectures"] = []  # no attention model among these two
    params["vocab"]["min_freq"] = 1
    params["evaluate"].update(device="cpu", threads=1, batch_size=64)
    for arch in ARCHITECTURES + list(PRETRAINED):
        params[arch].update(epochs=2, patience=2)
    dvc_repo.params = params
    dvc_repo.commit("pipeline")
    root = dvc_repo.root

    stages = ran(dvc_repo.dvc("repro").stdout)
    matrix = {f"{kind}@{arch}" for kind in ("train", "evaluate") for arch in ARCHITECTURES}
    matrix |= {f"{kind}_pretrained@{arch}" for kind in ("train", "evaluate") for arch in PRETRAINED}
    data = {"ingest", "clean", "vocab", "tokenize", "split", "pretrain_embeddings", "pretrain_lm", "baseline"}
    assert stages == data | {"compare"} | matrix
    board = json.loads((root / "metrics/leaderboard.json").read_text())
    assert sorted(row["arch"] for row in board["rows"]) == sorted(ARCHITECTURES + list(PRETRAINED) + ["baseline"])
    assert {row["arch"]: row["pretrained"] for row in board["rows"]}["gru_w2v"] == "word2vec"
    assert (root / "metrics/compare.png").read_bytes().startswith(b"\x89PNG")
    for arch in ARCHITECTURES:
        for kind in ("eval", "roc", "precision_recall", "confusion"):
            assert list((root / "metrics" / kind).glob(f"{arch}.*"))
    dvc_repo.commit("baseline")

    rnn_checkpoint = root / "data/models/rnn.pt"
    rnn_before = (sha256(rnn_checkpoint), rnn_checkpoint.stat().st_mtime_ns)
    gru_before = json.loads((root / "metrics/eval/gru.json").read_text())

    # DVC writes 0.00001 as `lr: 1e-05`, a string to YAML 1.1 readers: the stage must read it as the number
    stages = ran(dvc_repo.dvc("exp", "run", "-n", "wider-gru", "-S", "gru.hidden_dim=12", "-S", "gru.lr=0.00001").stdout)
    assert stages == {"train@gru", "evaluate@gru", "compare"}
    assert "lr: 1e-05" in (root / "params.yaml").read_text()
    assert (sha256(rnn_checkpoint), rnn_checkpoint.stat().st_mtime_ns) == rnn_before  # gru_w2v did not rerun either

    gru_after = json.loads((root / "metrics/eval/gru.json").read_text())
    assert gru_after["parameters"] > gru_before["parameters"]
    diff = json.loads(dvc_repo.dvc("metrics", "diff", "--json").stdout)
    changed = {path.replace(os.sep, "/"): values for path, values in diff.items()}
    assert changed["metrics/eval/gru.json"]["parameters"] == {
        "old": gru_before["parameters"],
        "new": gru_after["parameters"],
        "diff": gru_after["parameters"] - gru_before["parameters"],
    }
    assert not any("rnn" in path for path in changed)  # nothing of the untouched architecture moved

    shown = json.loads(dvc_repo.dvc("exp", "show", "--json").stdout)
    assert "wider-gru" in json.dumps(shown)
    hidden = [v for section in find_key(shown, "gru") if isinstance(section, dict) for v in find_key(section, "hidden_dim")]
    assert 12 in hidden


def test_a_train_stage_error_under_dvc_is_one_error_line(dvc_repo):
    params = dvc_repo.params
    params["architectures"], params["pretrained_architectures"] = ["gru"], {}
    dvc_repo.params = params
    dvc_repo.commit("pipeline")
    result = dvc_repo.dvc("exp", "run", "-S", "gru.lr=fast", "train", check=False)
    assert result.returncode != 0
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert ours == ["error: parameter gru.lr must be float, got 'fast'"], result.stderr
    assert "Traceback" not in result.stderr and "ChildFailedError" not in result.stderr
