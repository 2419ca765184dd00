"""The check_params stage: all of params.yaml checked before any stage works."""

import pytest
import yaml
from conftest import AVX2_ONLY, assert_one_line_error, repo_params, run_script, tiny_params, write_params

from imdb_rnn.check import check_params
from imdb_rnn.pipeline import PipelineError


def checked(tmp_path, params):
    write_params(tmp_path / "params.yaml", params)
    check_params(tmp_path / "params.yaml", {"out": tmp_path / "checked.txt", "settings": tmp_path / "settings"})
    return (tmp_path / "checked.txt").read_text()


def test_the_projects_params_and_the_tests_tiny_ones_pass(tmp_path):
    assert checked(tmp_path, repo_params()) == "params.yaml passed every stage's checks\n"
    assert checked(tmp_path, tiny_params("archive.tar.gz")) == "params.yaml passed every stage's checks\n"


def test_the_check_imports_no_library_only_other_stages_need():
    """check_params runs first in every `dvc repro` and `dvc exp run` whose parameters changed: it reads the other
    stages' schemas, not scikit-learn's or scipy.stats' (more than a second and a half of imports)."""
    import subprocess
    import sys

    from conftest import script_env

    heavy = ("sklearn", "scipy.stats", "matplotlib", "gensim", "dvclive")
    code = f"import sys\nimport imdb_rnn.check\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], env=script_env(), capture_output=True, text=True)
    assert result.stdout == "[]\n", result.stdout + result.stderr


def test_each_architecture_gets_the_settings_its_train_stage_resolves(tmp_path):
    """A twin's train stage depends on this file: its base's change reaches it, which DVC's params cannot show."""
    import json

    from imdb_rnn.config import arch_settings
    from imdb_rnn.params import read_architectures

    params = repo_params()
    checked(tmp_path, params)
    names = read_architectures(tmp_path / "params.yaml")
    assert sorted(p.stem for p in (tmp_path / "settings").glob("*.json")) == sorted(names)
    settings, config = arch_settings(tmp_path / "params.yaml", "bilstm_w2v")
    before = json.loads((tmp_path / "settings/bilstm_w2v.json").read_text())
    assert before == {**settings, **{k: v for k, v in config.as_dict().items() if k != "seed"}}
    assert before["hidden_dim"] == 128 and before["pretrained"] == "word2vec"
    others = {n: (tmp_path / f"settings/{n}.json").read_text() for n in names}
    params["bilstm"]["hidden_dim"] = 64  # the base of bilstm_w2v, bilstm_w2v_adv (its own width: unchanged)
    checked(tmp_path, params)
    after = {n: (tmp_path / f"settings/{n}.json").read_text() for n in names}
    assert {n for n in names if after[n] != others[n]} == {"bilstm", "bilstm_w2v"}
    assert json.loads(after["bilstm_w2v"])["hidden_dim"] == 64


def set_key(params, dotted, value):
    *path, last = dotted.split(".")
    section = params
    for key in path:
        section = section[key]
    section[last] = value
    return params


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("gru.lr", -1, "gru.lr"),
        ("seeds", [42, 42], "names a seed twice"),
        ("seeds", [], "non-empty list"),
        ("split.group_by", "moviee", "split.group_by"),
        ("tokenize.truncate_side", "middle", "tokenize.truncate_side"),
        ("compare.correction", "bonferroni", "compare.correction"),
        ("ingest.md5", 5, "ingest.md5"),
        ("pretrain_lm.epochs", 0, "pretrain_lm.epochs"),
        ("baseline.C_grid", [], "C_grid"),
        ("bilstm_mixed.unsup_ratio", -1, "bilstm_mixed.unsup_ratio"),
        ("report.architectures", ["gru"], "no attention pooling"),
        ("report.architectures", ["nope"], "does not train"),
        ("pretrain_embeddings.workers", 4, "reproducible only with one worker thread"),
        ("pretrain_embeddings.sources", ["train", "test"], "test reviews must stay unseen"),
    ],
)
def test_a_bad_parameter_anywhere_is_named(tmp_path, key, value, says):
    params = set_key(repo_params(), key, value)
    if key.startswith("bilstm_mixed"):  # checked where it is trained: list it
        params["semi_supervised_architectures"] = ["bilstm_mixed"]
    with pytest.raises(PipelineError, match=says.replace(".", r"\.")):
        checked(tmp_path, params)
    assert not (tmp_path / "checked.txt").exists()


def test_a_pretrained_architecture_must_fit_its_pretraining(tmp_path):
    params = set_key(repo_params(), "pretrain_embeddings.dim", 64)
    with pytest.raises(
        PipelineError,
        match=r"bilstm_w2v_adv\.embed_dim is 128 but pretrain_embeddings\.dim is 64|"
        r"\w+_w2v\w*\.embed_dim is \d+ but pretrain_embeddings\.dim is 64",
    ):
        checked(tmp_path, params)
    params = repo_params()
    params["pretrained_architectures"]["lm"] = ["lstm_lm"]
    params["pretrain_lm"]["hidden_dim"] = 64
    with pytest.raises(PipelineError, match=r"lstm_lm\.hidden_dim is 128 but pretrain_lm\.hidden_dim is 64"):
        checked(tmp_path, params)


def test_under_dvc_a_bad_parameter_stops_the_pipeline_before_any_stage_works(dvc_repo):
    dvc_repo.commit("pipeline")
    result = dvc_repo.dvc("exp", "run", "-S", "gru.lr=-1", check=False)
    assert result.returncode != 0
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and "gru.lr" in ours[0], result.stdout + result.stderr
    assert "Running stage 'ingest'" not in result.stdout
    assert (
        not (dvc_repo.root / "data/ingest/reviews.parquet").exists()
        and not (dvc_repo.root / "data/checked/params.txt").exists()
    )


def test_a_passing_check_reruns_nothing_downstream(dvc_repo):
    dvc_repo.commit("pipeline")
    first = dvc_repo.dvc("repro", "ingest")
    assert "Running stage 'check_params'" in first.stdout and "Running stage 'ingest'" in first.stdout
    params = dvc_repo.params
    params["gru"]["lr"] = 0.003  # a change no data stage reads
    dvc_repo.params = params
    second = dvc_repo.dvc("repro", "ingest")
    assert "Running stage 'check_params'" in second.stdout, second.stdout
    assert "Running stage 'ingest'" not in second.stdout and "Stage 'ingest' didn't change" in second.stdout


@pytest.mark.precision
def test_bfloat16_where_the_kernels_lack_it_is_refused_before_any_stage_and_again_where_training_runs(
    dvc_repo, tiny_data, tmp_path
):
    """oneDNN held to AVX2 (AVX2_ONLY) has no bfloat16 LSTM on any CPU. check_params refuses it first;
    since DVC reuses a cached check_params on another machine, the train stage refuses it again."""
    params = dvc_repo.params
    params["train"]["precision"] = "bfloat16"
    dvc_repo.params = params
    result = dvc_repo.dvc("repro", check=False, env=AVX2_ONLY)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(ours) == 1, result.stdout + result.stderr
    assert "train.precision is bfloat16, but" in ours[0] and "use float32, or auto" in ours[0]
    assert "Running stage 'ingest'" not in result.stdout

    params = yaml.safe_load((tiny_data / "params.yaml").read_text())
    params["train"]["precision"] = "bfloat16"
    write_params(tmp_path / "params.yaml", params)
    data = tiny_data / "data"
    trained = run_script(
        "train",
        "--arch",
        "lstm",
        "--params",
        tmp_path / "params.yaml",
        "--train",
        data / "split/train.npz",
        "--val",
        data / "split/val.npz",
        "--meta",
        data / "tokens/meta.json",
        "--vocab",
        data / "vocab/vocab.txt",
        "--out",
        "model.pt",
        "--metrics",
        "train.json",
        "--timing",
        "timing.json",
        "--live",
        "live",
        "--resume",
        "resume.pt",
        cwd=tmp_path,
        env=AVX2_ONLY,
    )
    assert_one_line_error(trained, "train.precision is bfloat16, but", "use float32, or auto")
    assert not (tmp_path / "model.pt").exists()


def test_a_model_memory_cannot_hold_is_refused_before_any_stage_and_where_it_trains(tmp_path, tiny_data):
    """8 layers of 8,192 bidirectional GRU units: 132 GiB of weights, gradients and Adam's state alone."""
    params = repo_params()
    params["gru"].update(num_layers=8, hidden_dim=8192, bidirectional=True)
    with pytest.raises(
        PipelineError,
        match=r"gru needs at least [\d,.]+ GiB to train \([\d,.]+ million parameters.* but this "
        r"machine has [\d,.]+ GiB: lower gru.hidden_dim, gru.num_layers or gru.batch_size",
    ):
        checked(tmp_path, params)
    tiny = yaml.safe_load((tiny_data / "params.yaml").read_text())
    tiny["gru"].update(num_layers=8, hidden_dim=8192, bidirectional=True)
    write_params(tmp_path / "params.yaml", tiny)
    data = tiny_data / "data"
    trained = run_script(
        "train",
        "--arch",
        "gru",
        "--params",
        tmp_path / "params.yaml",
        "--train",
        data / "split/train.npz",
        "--val",
        data / "split/val.npz",
        "--meta",
        data / "tokens/meta.json",
        "--vocab",
        data / "vocab/vocab.txt",
        "--out",
        "model.pt",
        "--metrics",
        "train.json",
        "--timing",
        "timing.json",
        "--live",
        "live",
        "--resume",
        "resume.pt",
        cwd=tmp_path,
        timeout=60,
    )
    assert_one_line_error(trained, "gru needs at least", "lower gru.hidden_dim")


def test_the_memory_estimate_counts_the_models_own_parameters():
    from imdb_rnn.config import ModelConfig
    from imdb_rnn.runtime import training_memory

    for cell, bidirectional, layers, pooling in (
        ("lstm", True, 2, "max"),
        ("gru", False, 1, "attention"),
        ("rnn", True, 3, "attention"),
    ):
        config = ModelConfig(
            vocab_size=50,
            cell=cell,
            bidirectional=bidirectional,
            num_layers=layers,
            pooling=pooling,
            embed_dim=6,
            hidden_dim=5,
            dropout=0.0,
            embed_dropout=0.0,
            attention_dim=4,
        )
        need, parameters, activations = training_memory(config, batch_size=3, seq_len=7)
        assert parameters == sum(p.numel() for p in config.build().parameters())
        gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
        assert activations == 4 * 3 * 7 * (6 + layers * (1 + bidirectional) * (gates + 2) * 5)
        assert need == 16 * parameters + activations


def test_without_a_figure_for_the_machines_memory_nothing_is_refused(monkeypatch):
    """Windows has no os.sysconf: the estimate cannot be held against anything there."""
    import os

    from imdb_rnn import runtime
    from imdb_rnn.config import ModelConfig

    monkeypatch.delattr(os, "sysconf")
    config = ModelConfig(
        vocab_size=3,
        cell="gru",
        bidirectional=True,
        num_layers=8,
        pooling="max",
        embed_dim=8,
        hidden_dim=8192,
        dropout=0.0,
        embed_dropout=0.0,
    )
    assert runtime.machine_memory("cpu") is None
    runtime.check_memory("gru", config, 64, 512, "cpu")


@pytest.mark.parametrize("ignored", [False, True])
def test_sighup_interrupts_a_stage_unless_nohup_ignores_it(tmp_path, ignored):
    import signal
    import subprocess
    import sys

    from conftest import as_a_background_job, script_env

    # the stage waits for a line on its standard input, which comes only after the signal: no race with a clock
    script = (
        "import sys\nfrom imdb_rnn.pipeline import run_main\n"
        "def main():\n    print('started', flush=True)\n    sys.stdin.readline()\n    print('finished', flush=True)\n"
        "run_main(main)\n"
    )
    # as nohup starts it, or as a terminal does
    ignore = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if ignored else as_a_background_job
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env=script_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ignore,
    )
    assert process.stdout.readline() == "started\n"
    process.send_signal(signal.SIGHUP)  # the kernel drops an ignored signal at once; a handled one is pending
    out, err = process.communicate("go\n", timeout=60)
    if ignored:
        assert process.returncode == 0 and out == "finished\n"
    else:
        assert process.returncode == 130 and err.splitlines() == ["error: interrupted"]
