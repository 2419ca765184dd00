"""docs/adding-an-architecture.md, followed to the letter: its module and its params.yaml section, added to a
copy of the repository, give an architecture that the pipeline trains, evaluates, ranks and serves."""

import json
import re
import subprocess
import sys

import yaml
from conftest import REPO_ROOT, ran_stages, script_env

DOC = REPO_ROOT / "docs" / "adding-an-architecture.md"


def documented(language):
    """The code blocks of `language` in the page, in order."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_documented_architecture_is_trained_ranked_and_served(dvc_repo):
    repo, root = dvc_repo, dvc_repo.root
    repo.train_only(["rnn"], seeds=[42])
    repo.commit("pipeline as it was")

    module, section = documented("python")[0], yaml.safe_load(documented("yaml")[0])
    name = "indrnn"
    saved_as = re.search(r"Save it as `(src/imdb_rnn/cells/\w+\.py)`", DOC.read_text(encoding="utf-8")).group(1)
    (root / saved_as).write_text(module)
    params = repo.params
    params[name] = section[name]
    params["architectures"] = [a for a in section["architectures"] if a in ("rnn", name)]  # two of the page's list
    params[name].update(embed_dim=8, hidden_dim=8)  # the tiny size tiny_params gives every section
    repo.params = params
    changed = repo.git("status", "--porcelain").stdout.split("\n")
    assert sorted(line[3:] for line in changed if line) == ["params.yaml", saved_as]  # the two places, nothing else
    repo.commit("indrnn")

    env = {"PYTHONPATH": str(root / "src")}  # the copy's code, with the new module in it
    stages = ran_stages(repo.dvc("repro", env=env).stdout)
    assert {f"train@{name}-42", f"evaluate@{name}-42", "compare"} <= stages
    board = json.loads((root / "metrics/leaderboard.json").read_text())
    row = next(r for r in board["rows"] if r["arch"] == name)
    assert row["accuracy_ci"][0] <= row["accuracy"] <= row["accuracy_ci"][1] and row["checkpoint"].endswith("seed42.pt")
    curve = (root / "metrics/curves/val_accuracy.csv").read_text().splitlines()
    assert any(line.startswith(f"{name},1,") for line in curve)
    payload = __import__("torch").load(root / "data/models" / name / "seed42.pt", weights_only=True)
    assert payload["model_config"]["cell"] == name

    def predict(*args):
        return subprocess.run(
            [sys.executable, "-m", "imdb_rnn.predict_cli", "--arch", name, *args],
            cwd=root,
            env=script_env(env),
            input="a wonderful film\n",
            capture_output=True,
            text=True,
        )

    scored = predict()
    assert scored.returncode == 0 and re.fullmatch(
        r"1 +(pos|neg) +0\.\d+ +stdin:1 +a wonderful film", scored.stdout.splitlines()[1]
    ), scored.stderr
    refused = predict("--precision", "int8")  # what the page says the cell lacks is refused, not run in float32
    assert (refused.returncode, refused.stdout) == (1, "")
    assert (
        refused.stderr
        == f"error: precision is int8, but the {name} cell has no int8 version: use float32 or bfloat16\n"
    )
    assert refused.stderr.strip() in DOC.read_text(encoding="utf-8")
