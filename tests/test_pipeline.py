"""End to end: `dvc repro` of the data and train stages in a throwaway git + DVC repository."""

import hashlib
import json
import re

import numpy as np
import torch
import yaml
from conftest import REPO_ROOT, TINY_PER_LABEL, TINY_UNSUP, ran_stages


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# three of the architectures keep the test short; tests/test_train.py trains every one of them
ARCHS = ["rnn", "bilstm", "attention"]


def test_repro_data_and_train_stages(dvc_repo):
    repo = dvc_repo
    params = repo.params
    params["architectures"] = archs = ARCHS
    params["seeds"] = seeds = [42, 7]
    repo.params = params
    repo.commit("tiny pipeline")

    # `train` names the whole matrix group (every architecture and seed): it and everything upstream, nothing downstream
    first = repo.dvc("repro", "train")
    expected = {"ingest", "clean", "vocab", "tokenize", "split"} | {f"train@{a}-{s}" for a in archs for s in seeds}
    assert expected <= ran_stages(first.stdout), first.stdout

    root = repo.root
    ingest = json.loads((root / "metrics/ingest.json").read_text())
    labelled = 2 * TINY_PER_LABEL
    assert ingest["per_split"] == {"train": labelled, "test": labelled, "unsup": TINY_UNSUP}
    assert ingest["empty_files_dropped"] == 0

    vocab = (root / "data/vocab/vocab.txt").read_text().splitlines()
    assert vocab[:2] == ["<pad>", "<unk>"]
    assert len(vocab) == len(set(vocab)) <= params["vocab"]["max_size"]
    meta = json.loads((root / "data/tokens/meta.json").read_text())
    assert meta["vocab_size"] == len(vocab)
    assert meta["tokenize"] == params["tokenize"]

    seq_len = params["tokenize"]["seq_len"]
    tokens = np.load(root / "data/tokens/train.npz")
    ids, lengths = tokens["ids"], tokens["lengths"]
    assert ids.shape == (labelled, seq_len) and ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < len(vocab)
    # left padding: zeros first, then exactly `length` real tokens (never the padding id)
    real = np.arange(seq_len)[None, :] >= seq_len - lengths[:, None]
    assert (ids[~real] == 0).all() and (ids[real] > 0).all()
    # the marker words of the synthetic reviews are common enough to be in the vocabulary
    assert {"wonderful", "awful", "the"} <= set(vocab)

    split = json.loads((root / "metrics/split.json").read_text())
    n_val = round(TINY_PER_LABEL * params["split"]["val_fraction"])
    assert {k: split["val"][k] for k in ("reviews", "pos", "neg", "pos_fraction")} == {
        "reviews": 2 * n_val,
        "pos": n_val,
        "neg": n_val,
        "pos_fraction": 0.5,
    }
    assert split["train"]["reviews"] == labelled - 2 * n_val and split["balanced"]
    train, val = np.load(root / "data/split/train.npz"), np.load(root / "data/split/val.npz")
    assert not set(train["review_ids"] * 2 + train["labels"]) & set(val["review_ids"] * 2 + val["labels"])

    checkpoints = {(a, s): root / f"data/models/{a}/seed{s}.pt" for a in archs for s in seeds}
    for (arch, seed), path in checkpoints.items():
        assert path.is_file()
        metrics = json.loads((root / f"metrics/train/{arch}/seed{seed}.json").read_text())
        assert (metrics["arch"], metrics["seed"], metrics["epochs_run"]) == (arch, seed, 1)
        timing = json.loads((root / f"metrics/timing/{arch}/seed{seed}.json").read_text())
        recorded = torch.load(path, weights_only=True)["metrics"]  # what training measured
        assert timing == {"arch": arch, **{key: recorded[key] for key in timing if key != "arch"}}
        assert (timing["device"], timing["threads"], timing["processes"]) == ("cpu", 1, 1)  # tiny_params: one thread
        assert set(timing) == {
            "arch",
            "seed",
            "train_seconds",
            "seconds_per_epoch",
            "tokens_per_second",
            "device",
            "precision",
            "threads",
            "processes",
        }
        assert timing["precision"] == "float32"  # which path ran (params.yaml train.precision)
    for arch in archs:  # another seed, another model
        assert digest(checkpoints[(arch, 42)]) != digest(checkpoints[(arch, 7)])
    before = {key: digest(p) for key, p in checkpoints.items()}

    # nothing changed: nothing runs
    second = repo.dvc("repro", "train")
    assert not ran_stages(second.stdout), second.stdout

    # one architecture's parameter changed: that architecture alone retrains, with every seed
    params["rnn"]["hidden_dim"] += 2
    repo.params = params
    third = repo.dvc("repro", "train")
    assert ran_stages(third.stdout) == {"train@rnn-42", "train@rnn-7"}, third.stdout
    after = {key: digest(p) for key, p in checkpoints.items()}
    assert all((after[key] != before[key]) == (key[0] == "rnn") for key in checkpoints)
    assert repo.dvc("status", "train").stdout.strip().endswith("Data and pipelines are up to date.")

    # what would rerun, from here on, is what `dvc status` lists (the decision `dvc repro` takes, without the
    # trainings): one seed changed, only that seed's stages; the other seed's models stay as they were
    params["seeds"] = [42, 8]
    repo.params = params
    assert would_run(repo, "train") == {f"train@{a}-8" for a in archs}

    # code: an edit to a module no train stage runs reruns stage_code alone (train.txt comes out the same)...
    with open(root / "src/imdb_rnn/compare.py", "a") as f:
        f.write("# an edit\n")
    assert ran_stages(repo.dvc("repro", "stage_code").stdout) == {"stage_code"}
    assert would_run(repo, "train") == {f"train@{a}-8" for a in archs}
    # ...and an edit to one they run retrains every model
    with open(root / "src/imdb_rnn/tracker.py", "a") as f:
        f.write("# an edit\n")
    assert ran_stages(repo.dvc("repro", "stage_code").stdout) == {"stage_code"}
    assert would_run(repo, "train") == {f"train@{a}-{s}" for a in archs for s in (42, 8)}


def would_run(repo, target):
    """The stages `dvc repro target` would run now: those `dvc status target` finds changed (or never run)."""
    return set(json.loads(repo.dvc("status", target, "--json").stdout))


def imported_modules(script):
    """The src/imdb_rnn modules a stage script imports, directly or through one another; a subpackage
    (cells/) counts as its folder, and every module in it is followed."""
    package = REPO_ROOT / "src/imdb_rnn"
    seen, todo = set(), [REPO_ROOT / script]
    while todo:
        text = todo.pop().read_text()
        names = re.findall(r"^\s*from (?:imdb_rnn)?\.{1,2}(\w+) import", text, re.M)
        names += re.findall(r"^\s*from imdb_rnn\.(\w+) import", text, re.M)
        for group in re.findall(r"^\s*from (?:imdb_rnn|\.) import ([\w, ]+)", text, re.M):
            names += [name.strip() for name in group.split(",")]
        for name in names:
            for path in (package / f"{name}.py", package / name):
                if path.exists() and path not in seen:
                    seen.add(path)
                    todo += sorted(path.glob("*.py")) if path.is_dir() else [path]
    return {str(path.relative_to(REPO_ROOT)) for path in seen}


def test_every_stage_depends_on_the_code_it_runs():
    """Each stage's one code dependency is stage_code's file for its script, which lists what the imports say:
    the script and the modules it reaches (read here by a second, independent reader), plus the package's
    __init__. A module missing would let `dvc repro` keep outputs of code that changed."""
    from imdb_rnn.stage_code import code_files

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["stage_code"]["deps"] == ["stages", "src/imdb_rnn"]
    for name, stage in stages.items():
        if name == "stage_code":
            continue
        script = re.search(r"stages/(\w+)\.py", stage["cmd"]).group(1)
        assert f"data/stage_code/{script}.txt" in stage["deps"], name
        assert not [dep for dep in stage["deps"] if dep.startswith(("src/", "stages/"))], name
        found = {
            str(p.relative_to(REPO_ROOT))
            for p in code_files(REPO_ROOT / f"stages/{script}.py", REPO_ROOT / "src/imdb_rnn")
        }
        imported = {m for m in imported_modules(f"stages/{script}.py")}
        folders = {m for m in imported if (REPO_ROOT / m).is_dir()}
        expanded = {m for m in imported - folders} | {
            str(p.relative_to(REPO_ROOT)) for f in folders for p in (REPO_ROOT / f).glob("*.py")
        }
        assert found == expanded | {f"stages/{script}.py", "src/imdb_rnn/__init__.py"}, name
    # the training code and nothing of evaluation's: an edit to the leaderboard retrains no model
    train = {p.name for p in code_files(REPO_ROOT / "stages/train.py", REPO_ROOT / "src/imdb_rnn")}
    assert {"model.py", "objective.py", "tracker.py", "registry.py", "mdlstm.py"} <= train
    assert not {"compare.py", "evaluate.py", "predict.py", "report.py", "significance.py"} & train


def test_adding_an_architecture_adds_nothing_to_dvc_yaml():
    """The stages take params.yaml's lists (matrix), the plots read the long-format files compare writes, and
    the model registry names the best model: dvc.yaml names no architecture, bar the attention reports that
    params.yaml's report.architectures lists."""
    from imdb_rnn.config import arch_settings
    from imdb_rnn.params import read_architectures, read_params

    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    reported = read_params(REPO_ROOT / "params.yaml")["report"]["architectures"]
    names = list(read_architectures(REPO_ROOT / "params.yaml"))
    assert all(
        n in names and arch_settings(REPO_ROOT / "params.yaml", n)[0]["pooling"] == "attention" for n in reported
    )
    assert [p for p in pipeline["plots"] if isinstance(p, str)] == [f"metrics/report/{n}.png" for n in reported]
    text = yaml.safe_dump(
        {**pipeline, "plots": [p for p in pipeline["plots"] if not isinstance(p, str)]}
    )  # no comments
    assert [n for n in names if re.search(rf"\b{n}\b", text)] == []
    assert list(pipeline["artifacts"]) == ["best"]


def test_only_the_semi_supervised_stages_read_the_unlabelled_reviews(dvc_repo, archive_factory):
    """New unlabelled reviews retrain the models that learn from them (and word2vec's), nothing else."""
    from conftest import TINY_PER_LABEL, TINY_UNSUP

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    readers = {name for name, stage in stages.items() if "data/tokens/unsup.npz" in stage.get("deps", [])}
    assert readers == {"train_semi_supervised"}
    repo = dvc_repo
    params = repo.train_only(["rnn"], pretrained={"bilstm_mixed": "semi_supervised"}, seeds=[42])
    repo.commit("rnn and bilstm_mixed")
    first = repo.dvc("repro", "train", "train_semi_supervised")
    assert {"tokenize", "train@rnn-42", "train_semi_supervised@bilstm_mixed-42"} <= ran_stages(first.stdout), (
        first.stdout
    )

    # the same labelled reviews, six more unlabelled ones
    more = archive_factory("more_unsup.tar.gz", per_label=TINY_PER_LABEL, unsup=TINY_UNSUP + 6)
    params["ingest"]["source"] = str(more)
    repo.params = params
    second = repo.dvc("repro", "train", "train_semi_supervised")
    ran = ran_stages(second.stdout)
    assert {"ingest", "tokenize", "pretrain_embeddings", "train_semi_supervised@bilstm_mixed-42"} <= ran, second.stdout
    assert not ran & {"split", "train@rnn-42"}, second.stdout
    assert len(np.load(repo.root / "data/tokens/unsup.npz")["labels"]) == TINY_UNSUP + 6

    # bilstm_mixed `extends: bilstm`: a change to bilstm's section (not trained here) retrains it, and only it
    assert repo.params["bilstm_mixed"]["extends"] == "bilstm" and "lr" not in repo.params["bilstm_mixed"]
    params["bilstm"]["lr"] *= 2
    repo.params = params
    repo.dvc("repro", "check_params")  # it writes each architecture's settings as extends resolves them
    assert would_run(repo, "train") | would_run(repo, "train_semi_supervised") == {
        "train_semi_supervised@bilstm_mixed-42"
    }
