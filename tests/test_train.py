"""Training: every architecture learns an easy signal; runs are reproducible; failures are one line."""

import json
import random
import runpy
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    AVX2_ONLY,
    STAGES,
    assert_one_line_error,
    dvc_args,
    needs_native_bfloat16,
    repo_params,
    run_script,
    script_env,
    write_params,
)
from synthetic import review
from tiny_model import configs
from torch import nn

from imdb_rnn.adversarial import EmbeddingPerturbation, adversarial_loss
from imdb_rnn.batches import Reviews, align_left
from imdb_rnn.checkpoint import load_checkpoint
from imdb_rnn.config import MONITORS, TRAIN_SCHEMA, ModelConfig, arch_schema, architecture_section
from imdb_rnn.inference import accuracy, loss_and_accuracy, predict_logits
from imdb_rnn.model import RecurrentClassifier
from imdb_rnn.optim import make_optimizer, make_scheduler, optimizer_step
from imdb_rnn.params import check, read_params
from imdb_rnn.pipeline import SUPERVISED, PipelineError
from imdb_rnn.runtime import training_precision
from imdb_rnn.text import build_vocab, clean_texts, count_words, split_words, tokenize
from imdb_rnn.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: more threads only add overhead

PARAMS = repo_params()
ARCHS = PARAMS["architectures"]
CLEAN = PARAMS["clean"]
TOKENIZE = {"seq_len": 40, "pad_side": "left", "truncate_side": "right"}
COMMON = {
    **check(
        "train",
        {
            "device": "cpu",
            "precision": "float32",
            "threads": 1,
            "eval_batch_size": 256,
            "bucket_pool": 50,
            "processes": 1,
        },
        TRAIN_SCHEMA,
    ),
    "seed": 0,
}


def marker_reviews(n, seed):
    """Short synthetic reviews whose label is carried by marker words (wonderful/awful...)."""
    rng = random.Random(seed)
    labels = [i % 2 for i in range(n)]
    texts = [review(rng, "pos" if y else "neg", min_words=3, max_words=25) for y in labels]
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def marker_data():
    train_texts, train_labels = marker_reviews(400, seed=1)
    val_texts, val_labels = marker_reviews(200, seed=2)
    words, _ = split_words(clean_texts(train_texts, CLEAN))
    vocab = build_vocab(count_words(words), 1000, 1)
    sets = []
    for texts, labels in ((train_texts, train_labels), (val_texts, val_labels)):
        ids, kept, _ = tokenize(texts, vocab, CLEAN, TOKENIZE)
        sets.append(Reviews(align_left(ids, kept, TOKENIZE["pad_side"]), kept, labels))
    return vocab, sets[0], sets[1]


def small_arch(arch, **change):
    section = dict(
        {**PARAMS["arch_defaults"], **architecture_section(PARAMS, arch)},
        embed_dim=16,
        hidden_dim=16,
        dropout=0.0,
        embed_dropout=0.0,
        lr=0.01,
        batch_size=16,
        epochs=5,
        patience=5,
        seq_len=TOKENIZE["seq_len"],
        grad_clip=1.0,
    )
    if "attention_dim" in section:
        section["attention_dim"] = 8
    section.update(change)
    return check(arch, section, arch_schema(section["cell"]))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_learns_marker_words(arch, marker_data, capsys):
    vocab, train, val = marker_data
    params = small_arch(arch)
    torch.manual_seed(0)
    model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
    state, history, summary, timing = fit(
        model, train, val, configs(params, len(vocab), COMMON)[1], torch.device("cpu"), name=arch
    )
    assert summary["val_accuracy"] >= 0.9, history
    sign = 1 if MONITORS[params["monitor"]] else -1  # the first epoch with the best monitored value
    assert summary["best_epoch"] == max(history, key=lambda r: (sign * r[params["monitor"]], -r["epoch"]))["epoch"]
    # every epoch reads each training review's real tokens once
    assert [round(r["tokens_per_second"] * r["seconds"]) for r in history] == [train.tokens()] * len(history)
    # the returned state is the best epoch's, and it scores as reported
    model.load_state_dict(state)
    _, accuracy = loss_and_accuracy(predict_logits(model, val, 64, "cpu"), val.labels)
    assert accuracy == pytest.approx(summary["val_accuracy"], abs=1e-6)


def test_early_stopping_keeps_the_best_epoch(marker_data, monkeypatch, capsys):
    vocab, train, val = marker_data
    params = small_arch("gru", epochs=10, patience=2, monitor="val_loss")
    val_losses = iter([0.5, 0.4, 0.45, 0.41, 0.3, 0.2])
    monkeypatch.setattr("imdb_rnn.tracker.loss_and_accuracy", lambda logits, labels: (next(val_losses), 0.5))
    model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
    _, history, summary, _ = fit(
        model, train, val, configs(params, len(vocab), COMMON)[1], torch.device("cpu"), name="gru"
    )
    assert [r["val_loss"] for r in history] == [0.5, 0.4, 0.45, 0.41]
    assert (summary["best_epoch"], summary["epochs_run"], summary["val_loss"]) == (2, 4, 0.4)
    assert "no better val_loss for 2 epochs, stopping early" in capsys.readouterr().out


def test_early_stopping_on_validation_accuracy_keeps_the_most_accurate_epoch(marker_data, monkeypatch, capsys):
    """The grouped-split case: validation loss bottoms out at epoch 2 while accuracy still rises."""
    vocab, train, val = marker_data
    scores = iter(
        [(0.34, 0.851), (0.33, 0.850), (0.35, 0.862), (0.37, 0.864), (0.40, 0.860), (0.41, 0.859), (0.5, 0.9)]
    )
    monkeypatch.setattr("imdb_rnn.tracker.loss_and_accuracy", lambda logits, labels: next(scores))
    results = {}
    for monitor in ("val_loss", "val_accuracy"):
        torch.manual_seed(0)
        params = small_arch("gru", epochs=10, patience=2, monitor=monitor)
        model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
        state, history, summary, _ = fit(
            model, train, val, configs(params, len(vocab), COMMON)[1], torch.device("cpu"), name="gru"
        )
        results[monitor] = (summary["best_epoch"], summary["epochs_run"], summary["val_accuracy"])
        scores = iter(
            [(0.34, 0.851), (0.33, 0.850), (0.35, 0.862), (0.37, 0.864), (0.40, 0.860), (0.41, 0.859), (0.5, 0.9)]
        )
    assert results == {"val_loss": (2, 4, 0.85), "val_accuracy": (4, 6, 0.864)}
    assert "no better val_accuracy for 2 epochs, stopping early" in capsys.readouterr().out


def test_non_finite_loss_stops_with_epoch_and_batch(marker_data, monkeypatch):
    vocab, train, val = marker_data
    params = small_arch("lstm", epochs=2)
    model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
    calls = {"n": 0}
    forward = RecurrentClassifier.forward

    def poisoned(self, ids, lengths, return_attention=False):
        calls["n"] += self.training
        out = forward(self, ids, lengths, return_attention)
        batches = -(-len(train) // params["batch_size"])
        return out * float("inf") if self.training and calls["n"] == batches + 3 else out

    monkeypatch.setattr(RecurrentClassifier, "forward", poisoned)
    with pytest.raises(PipelineError, match=r"lstm: loss became nan at epoch 2, batch 3: lower lstm\.lr"):
        fit(model, train, val, configs(params, len(vocab), COMMON)[1], torch.device("cpu"), name="lstm")


@pytest.mark.parametrize("freeze", [False, True])
def test_embedding_attack_is_the_loss_raising_step_of_the_asked_size(marker_data, freeze):
    vocab, train, val = marker_data
    torch.manual_seed(0)
    model = ModelConfig.from_dict({**small_arch("bilstm"), "vocab_size": len(vocab)}).build().train()
    model.embedding.weight.requires_grad_(not freeze)
    ids, lengths, labels = train.batch(np.arange(32), "cpu")
    loss_fn = torch.nn.BCEWithLogitsLoss()
    perturbation = EmbeddingPerturbation(model.embedding, keep_grad=True)
    clean = loss_fn(model(ids, lengths), labels)
    clean.backward()
    recorded, _ = perturbation.take()
    embedded, seen = recorded.detach(), {}
    hook = model.embedding.register_forward_hook(lambda m, i, out: seen.update(out=out.detach()))
    attacked = adversarial_loss(perturbation, recorded, 0.05, lambda: loss_fn(model(ids, lengths), labels))
    hook.remove()
    delta = seen["out"] - embedded  # the perturbation's hook runs first, so this hook sees the moved embedding
    per_review = delta.norm(dim=(0, 2)) / embedded.norm(dim=(0, 2))
    assert torch.allclose(per_review, torch.full_like(per_review, 0.05), rtol=1e-4)
    assert attacked.item() > clean.item() + 1e-4  # the step goes uphill
    # a random step of the same size raises the loss far less (to first order, not at all)
    noise = torch.randn_like(delta)
    with (
        torch.no_grad(),
        perturbation.moved(noise * (delta.norm(dim=(0, 2), keepdim=True) / noise.norm(dim=(0, 2), keepdim=True))),
    ):
        randomly = loss_fn(model(ids, lengths), labels).item()
    assert attacked.item() - clean.item() > 3 * abs(randomly - clean.item())
    perturbation.remove()
    assert not model.embedding._forward_hooks


@pytest.mark.parametrize("arch", ["bilstm", "rnn"])
def test_adversarial_training_learns_and_leaves_no_hook(arch, marker_data, capsys):
    vocab, train, val = marker_data
    params = small_arch(arch, adversarial_eps=0.05)
    torch.manual_seed(0)
    model = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
    state, history, summary, _ = fit(
        model, train, val, configs(params, len(vocab), COMMON)[1], torch.device("cpu"), name=arch
    )
    assert summary["val_accuracy"] >= 0.9, history
    assert not model.embedding._forward_hooks
    # and it is not the plain run: the attack changed the training
    torch.manual_seed(0)
    plain = ModelConfig.from_dict({**params, "vocab_size": len(vocab)}).build()
    _, plain_history, _, _ = fit(
        plain,
        train,
        val,
        configs(dict(params, adversarial_eps=0.0), len(vocab), COMMON)[1],
        torch.device("cpu"),
        name=arch,
    )
    assert history[0]["val_loss"] != plain_history[0]["val_loss"]


# --- the stage script ----------------------------------------------------------------------------


def tiny_train_params(tiny_data, folder, **rnn_change):
    """The tiny pipeline's params.yaml (tiny models, one epoch) with rnn changed as asked."""
    params = read_params(tiny_data / "params.yaml")
    params["rnn"].update(rnn_change)
    return write_params(folder / "params.yaml", params)


def train_args(tiny_data, folder, arch="rnn", out="run"):
    data = tiny_data / "data"
    return [
        "--arch",
        arch,
        "--params",
        folder / "params.yaml",
        "--train",
        data / "split/train.npz",
        "--val",
        data / "split/val.npz",
        "--meta",
        data / "tokens/meta.json",
        "--vocab",
        data / "vocab/vocab.txt",
        "--out",
        folder / out / "model.pt",
        "--metrics",
        folder / out / "metrics.json",
        "--timing",
        folder / out / "timing.json",
        "--live",
        folder / out / "live",
    ]


def run_train_in_process(args, monkeypatch, capsys):
    """stages/train.py in this process (torch is already imported): (exit code, stderr lines)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *dvc_args("train", args), *map(str, args)])
    monkeypatch.setenv(SUPERVISED, "1")  # in this process, not in a supervised child
    code = 0
    try:
        runpy.run_path(str(STAGES / "train.py"), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err.splitlines()


@pytest.fixture(scope="module")
def two_trainings(tiny_data, tmp_path_factory):
    """stages/train.py run twice, in two processes, with the same params and seed."""
    folder = tmp_path_factory.mktemp("two_trainings")
    tiny_train_params(tiny_data, folder, epochs=2)
    for out in ("a", "b"):
        result = run_script("train", *train_args(tiny_data, folder, out=out), cwd=folder)
        assert result.returncode == 0, result.stderr
    return folder


def test_same_seed_same_metrics(two_trainings):
    a, b = (two_trainings / out for out in ("a", "b"))
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    assert json.loads((a / "metrics.json").read_text())["epochs_run"] == 2
    assert (a / "live/metrics.json").read_text() == (b / "live/metrics.json").read_text()
    states = [torch.load(run / "model.pt", weights_only=True)["state_dict"] for run in (a, b)]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_another_seed_trains_another_model_and_says_so(two_trainings, tiny_data):
    folder = two_trainings
    result = run_script("train", *train_args(tiny_data, folder, out="seed7"), "--seed", "7", cwd=folder)
    assert result.returncode == 0, result.stderr
    a, seven = (torch.load(folder / run / "model.pt", weights_only=True) for run in ("a", "seed7"))
    assert (a["metrics"]["seed"], seven["metrics"]["seed"]) == (42, 7)  # dvc.yaml's default for tests: the first seed
    assert json.loads((folder / "seed7/metrics.json").read_text())["seed"] == 7
    assert not torch.equal(a["state_dict"]["embedding.weight"], seven["state_dict"]["embedding.weight"])


def test_stage_checkpoint_loads(two_trainings, tiny_data):
    model, payload = load_checkpoint(two_trainings / "a/model.pt")
    metrics = json.loads((two_trainings / "a/metrics.json").read_text())
    assert payload["arch"] == "rnn" and payload["metrics"]["val_accuracy"] == metrics["val_accuracy"]
    assert payload["vocab"] == (tiny_data / "data/vocab/vocab.txt").read_text().splitlines()
    assert not model.training


def test_stage_with_weight_averaging_keeps_the_average_and_logs_both(two_trainings, tiny_data):
    """Through the train stage: the checkpoint holds the average, dvclive logs the trained weights'
    figures beside it."""
    folder = two_trainings
    tiny_train_params(tiny_data, folder, epochs=2, ema_decay=0.9)
    result = run_script("train", *train_args(tiny_data, folder, out="ema"), cwd=folder)
    assert result.returncode == 0, result.stderr
    plain, ema = (torch.load(folder / run / "model.pt", weights_only=True) for run in ("a", "ema"))
    assert plain["state_dict"].keys() == ema["state_dict"].keys()
    assert not torch.equal(plain["state_dict"]["embedding.weight"], ema["state_dict"]["embedding.weight"])
    live = {p.relative_to(folder / "ema/live/plots/metrics").as_posix() for p in (folder / "ema/live").rglob("*.tsv")}
    assert {"val/loss_raw.tsv", "val/accuracy_raw.tsv", "val/loss.tsv", "val/accuracy.tsv"} <= live
    # the trained weights' figures are the plain run's (`a`, the same params but the average)
    raw = (folder / "ema/live/plots/metrics/val/loss_raw.tsv").read_text().splitlines()
    plain_loss = (folder / "a/live/plots/metrics/val/loss.tsv").read_text().splitlines()
    assert [line.split("\t")[1:] for line in raw[1:]] == [line.split("\t")[1:] for line in plain_loss[1:]]
    tiny_train_params(tiny_data, folder, epochs=2)  # as the fixture left it, for the tests after this one


def test_stage_non_finite_loss_writes_no_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    tiny_train_params(tiny_data, tmp_path)
    forward = RecurrentClassifier.forward
    calls = {"n": 0}

    def poisoned(self, ids, lengths, return_attention=False):
        calls["n"] += self.training
        out = forward(self, ids, lengths, return_attention)
        return out + float("nan") if calls["n"] == 2 else out

    monkeypatch.setattr(RecurrentClassifier, "forward", poisoned)
    monkeypatch.chdir(tmp_path)
    code, err = run_train_in_process(train_args(tiny_data, tmp_path), monkeypatch, capsys)
    assert code == 1
    assert err[-1].startswith("error: rnn: loss became nan at epoch 1, batch 2"), err
    assert not (tmp_path / "run/model.pt").exists() and not (tmp_path / "run/metrics.json").exists()


def test_unknown_architecture(tmp_path):
    """In a real process: stderr is the one error line, nothing else. Data files are absent: never read."""
    write_params(tmp_path / "params.yaml", repo_params())
    result = run_script("train", "--arch", "transformer", cwd=tmp_path)
    assert_one_line_error(result, "unknown architecture 'transformer'", ", ".join(ARCHS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("live", [".", "project", "project/sub/.."])
def test_a_live_folder_that_holds_the_project_is_refused_and_nothing_deleted(tiny_data, tmp_path, live):
    """dvclive empties the folder it logs to of params.yaml, dvc.yaml and plots/ when a run starts."""
    (tmp_path / "project/plots").mkdir(parents=True)
    for folder in (tmp_path, tmp_path / "project"):
        write_params(folder / "params.yaml", yaml.safe_load((tiny_data / "params.yaml").read_text()))
        (folder / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "project/sub").mkdir()
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    data = tiny_data / "data"
    result = run_script(
        "train",
        "--arch",
        "gru",
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
        live,
        "--resume",
        "resume.pt",
        cwd=tmp_path,
    )
    assert_one_line_error(result, f"--live {live} is a project folder", "a folder of its own")
    assert (
        sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    )  # nothing deleted, nothing written


@pytest.mark.parametrize(
    "section, change, fragments",
    [
        ("rnn", {"lr": 5.0}, "rnn.lr must be <= 1.0"),
        ("rnn", {"hidden_dim": 0}, "rnn.hidden_dim must be >= 1"),
        ("rnn", {"hidden_dim": "big"}, "rnn.hidden_dim must be int, got 'big'"),
        ("rnn", {"batch_size": 32.0}, "rnn.batch_size must be int"),
        ("rnn", {"bidirectional": 1}, "rnn.bidirectional must be bool"),
        ("rnn", {"dropout": True}, "rnn.dropout must be int or float"),
        ("rnn", {"hiden_dim": 8}, "unknown parameter rnn.hiden_dim"),
        ("rnn", {"cell": "transformer"}, "rnn.cell must be one of rnn, lstm, gru"),
        ("rnn", {"pooling": "attention"}, "rnn.attention_dim is missing"),
        ("rnn", {"monitor": "val_f1"}, "rnn.monitor must be one of val_loss, val_accuracy"),
        ("rnn", {"lr_schedule": "step"}, "rnn.lr_schedule must be one of constant, linear, cosine"),
        ("rnn", {"warmup_steps": -1}, "rnn.warmup_steps must be >= 0"),
        ("train", {"device": "tpu"}, "train.device must be one of auto, cpu, cuda"),
        ("train", {"seed": 0}, "unknown parameter train.seed"),  # the seeds are params.yaml's `seeds` now
        ("rnn", {"vat_eps": -0.1}, "rnn.vat_eps must be >= 0"),
        ("rnn", {"vat_weight": -1}, "rnn.vat_weight must be >= 0"),
        ("rnn", {"entropy_weight": -0.5, "unsup_ratio": 1}, "rnn.entropy_weight must be >= 0"),
        ("rnn", {"unsup_ratio": -1}, "rnn.unsup_ratio must be >= 0"),
        ("rnn", {"entropy_weight": 1.0}, "rnn.entropy_weight is 1.0 but rnn.unsup_ratio is 0"),
        ("rnn", {"unsup_ratio": 1}, "rnn.unsup_ratio is 1 but neither vat_eps nor entropy_weight is on"),
        ("rnn", {"ema_decay": 1.0}, "rnn.ema_decay must be <= 0.9999"),
        ("arch_defaults", {"ema_decay": -0.5}, "arch_defaults.ema_decay must be >= 0"),
    ],
)
def test_invalid_hyperparameters_rejected_before_training(tmp_path, monkeypatch, capsys, section, change, fragments):
    """The data files do not exist here: the parameters are checked before anything is read."""
    params = repo_params()
    params[section].update(change)
    write_params(tmp_path / "params.yaml", params)
    monkeypatch.chdir(tmp_path)
    code, err = run_train_in_process(["--arch", "rnn"], monkeypatch, capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and fragments in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_unlabelled_reviews_asked_for_but_not_given_is_one_line_before_training(
    tiny_data, tmp_path, monkeypatch, capsys
):
    tiny_train_params(tiny_data, tmp_path, vat_eps=0.02, unsup_ratio=1)
    code, err = run_train_in_process(train_args(tiny_data, tmp_path), monkeypatch, capsys)
    assert (
        code == 1
        and len(err) == 1
        and "rnn draws unlabelled reviews (unsup_ratio 1) but the stage got no --unlabelled file" in err[0]
    ), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    # and a labelled file passed as the unlabelled one is refused
    code, err = run_train_in_process(
        [*train_args(tiny_data, tmp_path), "--unlabelled", tiny_data / "data/split/val.npz"], monkeypatch, capsys
    )
    assert code == 1 and len(err) == 1 and "holds labelled reviews: pass the tokenize stage's unsup.npz" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_accuracy_calls_positive_only_a_logit_above_zero():
    # a logit of exactly 0 is a probability of 0.5: not positive, as predict.label_of says
    assert accuracy([0.0, 0.5, -0.5, 3.0], [0, 1, 0, 1]) == 1.0
    assert accuracy([0.0, 0.5], [1, 0]) == 0.0


def test_optimizer_is_fused_adam_over_the_trainable_parameters_with_the_asked_decay():
    model = ModelConfig.from_dict({**small_arch("gru"), "vocab_size": 30}).build()
    model.embedding.weight.requires_grad_(False)  # a frozen embedding is not optimised
    optimizer = make_optimizer(model, 0.01, 0.1)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"] is True
    assert (optimizer.defaults["lr"], optimizer.defaults["weight_decay"]) == (0.01, 0.1)
    (group,) = optimizer.param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters() if p is not model.embedding.weight}
    assert make_optimizer(model, 0.01).defaults["weight_decay"] == 0.0


def test_fit_takes_its_weight_decay_and_seed_and_times_what_it_trained(marker_data, monkeypatch):
    vocab, train, val = marker_data
    params = small_arch("gru", epochs=2, patience=2, weight_decay=0.01)
    made, real = [], make_optimizer
    monkeypatch.setattr(
        "imdb_rnn.train.make_optimizer", lambda model, lr, decay=0.0: made.append((lr, decay)) or real(model, lr, decay)
    )
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model_config, train_config = configs(params, len(vocab), COMMON)
        _, history, _, timing = fit(model_config.build(), train, val, train_config, torch.device("cpu"), name="gru")
        runs.append([row["val_loss"] for row in history])
    assert made == [(params["lr"], 0.01)] * 2
    assert runs[0] == runs[1]  # the seed decides the batches: the same seed, the same training
    seconds = sum(row["seconds"] for row in history)
    assert timing["train_seconds"] == round(seconds, 1)
    assert timing["tokens_per_second"] == round(2 * train.tokens() / seconds, 1)


@pytest.mark.precision
@needs_native_bfloat16
def test_bfloat16_training_learns_with_float32_weights_and_says_so(marker_data):
    vocab, train, val = marker_data
    params = small_arch("lstm", epochs=3, patience=3)
    runs = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model_config, train_config = configs(params, len(vocab), {**COMMON, "precision": precision})
        model = model_config.build()
        _, history, summary, timing = fit(model, train, val, train_config, torch.device("cpu"), name="lstm")
        assert timing["precision"] == precision
        assert all(p.dtype == torch.float32 for p in model.parameters())  # the master weights stay float32
        runs[precision] = (history, summary)
    assert runs["bfloat16"][1]["val_accuracy"] >= 0.9  # the marker words are learnt in bfloat16 too
    assert runs["bfloat16"][0][0]["train_loss"] != runs["float32"][0][0]["train_loss"]  # the path really ran


def no_native_bfloat16(monkeypatch):
    """Make this process see a CPU without native bfloat16 (safe on any CPU: nothing runs in bfloat16)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)


@pytest.mark.precision
@pytest.mark.parametrize(
    "cell, expected",
    [
        ("lstm", "bfloat16"),  # PyTorch's CPU autocast runs the LSTM kernel in bfloat16: it pays
        ("gru", "float32"),  # the GRU stays float32 under autocast: the casts would only cost
    ],
)
@needs_native_bfloat16
def test_auto_precision_trains_in_bfloat16_only_where_it_pays_and_says_which_ran(marker_data, cell, expected):
    vocab, train, val = marker_data
    runs = {}
    for precision in ("auto", expected):
        torch.manual_seed(0)
        model_config, train_config = configs(
            small_arch(cell, epochs=1, patience=1), len(vocab), {**COMMON, "precision": precision}
        )
        _, history, _, timing = fit(model_config.build(), train, val, train_config, torch.device("cpu"), name=cell)
        assert timing["precision"] == expected
        runs[precision] = history[0]["train_loss"]
    assert runs["auto"] == runs[expected]  # auto ran exactly the path it names


@pytest.mark.precision
def test_without_native_bfloat16_auto_trains_in_float32_and_bfloat16_is_refused(marker_data, monkeypatch):
    vocab, train, val = marker_data
    no_native_bfloat16(monkeypatch)
    model_config, train_config = configs(
        small_arch("lstm", epochs=1, patience=1), len(vocab), {**COMMON, "precision": "auto"}
    )
    *_, timing = fit(model_config.build(), train, val, train_config, torch.device("cpu"), name="lstm")
    assert timing["precision"] == "float32"  # bfloat16 emulated without AMX or AVX512-BF16: slow, or no kernel
    model_config, train_config = configs(
        small_arch("lstm", epochs=1, patience=1), len(vocab), {**COMMON, "precision": "bfloat16"}
    )
    with pytest.raises(
        PipelineError, match="train.precision is bfloat16, but this CPU has no native bfloat16 .*: use float32, or auto"
    ):
        fit(model_config.build(), train, val, train_config, torch.device("cpu"), name="lstm")


@pytest.mark.precision
def test_the_kernels_decide_native_bfloat16_not_the_cpu_flags():
    """oneDNN held to AVX2 has no bfloat16 LSTM even on a CPU whose flags say AVX512-BF16 (and torch's
    flag check still says so): the probe sees the limit, and the train stage refuses in one line."""
    code = (
        "import torch; from imdb_rnn.runtime import native_bfloat16, require_precision\n"
        "print(native_bfloat16('cpu'))\nrequire_precision('bfloat16', 'cpu', 'train.precision')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=script_env(AVX2_ONLY), capture_output=True, text=True, timeout=120
    )
    assert result.stdout == "False\n" and "train.precision is bfloat16, but" in result.stderr, result.stderr


def test_the_bfloat16_probe_leaves_the_random_stream_as_it_was_and_works_under_inference_mode():
    from imdb_rnn import runtime

    runtime._cpu_runs_bfloat16.cache_clear()
    torch.manual_seed(3)
    runtime._cpu_runs_bfloat16()
    after_probe = torch.rand(4)
    torch.manual_seed(3)
    assert torch.equal(torch.rand(4), after_probe)  # a seeded run is the same whether the probe ran first or not
    outside = runtime._cpu_runs_bfloat16()
    runtime._cpu_runs_bfloat16.cache_clear()
    with torch.inference_mode():  # a first caller scoring under inference mode gets the same answer
        assert runtime._cpu_runs_bfloat16() == outside


def test_auto_precision_is_float32_on_a_gpu(monkeypatch):
    model = RecurrentClassifier(10, 4, 4, "lstm")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert training_precision("auto", torch.device("cuda"), model) == "float32"
    assert training_precision("bfloat16", torch.device("cuda"), model) == "bfloat16"  # asked for, and the GPU has it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(PipelineError, match="the GPU Tesla T4 has no bfloat16"):
        training_precision("bfloat16", torch.device("cuda"), model)


def rates(schedule, total, warmup=0, lr=0.01):
    """The learning rate of each of `total` optimiser steps under `schedule`."""
    optimizer = make_optimizer(nn.Linear(2, 1), lr)
    scheduler = make_scheduler(optimizer, schedule, total, warmup)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if scheduler:
            scheduler.step()
    return seen


def test_lr_schedules_decay_to_zero_over_the_run_and_warm_up_first():
    assert make_scheduler(make_optimizer(nn.Linear(2, 1), 0.01), "constant", 10) is None  # today's training, untouched
    assert rates("constant", 4) == [0.01] * 4
    assert rates("linear", 4) == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    assert rates("cosine", 4) == pytest.approx(
        [0.01, 0.01 * (1 + np.cos(np.pi / 4)) / 2, 0.005, 0.01 * (1 + np.cos(3 * np.pi / 4)) / 2]
    )
    # warm-up: from lr / warmup_steps, reaching lr after warmup_steps steps, then the decay over the steps left
    assert rates("linear", 6, warmup=2) == pytest.approx([0.005, 0.0075, 0.01, 0.0075, 0.005, 0.0025])
    assert rates("constant", 4, warmup=2) == pytest.approx([0.005, 0.0075, 0.01, 0.01])
    with pytest.raises(PipelineError, match="warmup_steps is 10 but training has only 10 steps"):
        make_scheduler(make_optimizer(nn.Linear(2, 1), 0.01), "linear", 10, 10)
    with pytest.raises(PipelineError, match="unknown lr_schedule 'step'"):
        make_scheduler(make_optimizer(nn.Linear(2, 1), 0.01), "step", 10)


def test_a_decaying_schedule_learns_and_ends_the_run_at_a_rate_near_zero(marker_data, monkeypatch):
    vocab, train, val = marker_data
    seen = []
    real = make_scheduler
    monkeypatch.setattr("imdb_rnn.train.make_scheduler", lambda *a: seen.append(real(*a)) or seen[-1])
    runs = {}
    for schedule in ("constant", "linear"):
        torch.manual_seed(0)
        model_config, train_config = configs(
            small_arch("gru", epochs=3, patience=3, lr_schedule=schedule), len(vocab), COMMON
        )
        _, history, _, _ = fit(model_config.build(), train, val, train_config, torch.device("cpu"), name="gru")
        runs[schedule] = history
    constant, linear = seen
    assert constant is None
    # the schedule spans every step of the 3 epochs: after the last one the rate is 0
    assert linear.get_last_lr() == [0.0] and linear.last_epoch == 3 * -(-len(train) // 16)
    assert runs["linear"][-1]["val_accuracy"] > 0.9  # still learns the markers
    assert runs["linear"][-1]["val_loss"] != runs["constant"][-1]["val_loss"]


def test_weight_averaging_keeps_the_moving_average_and_leaves_training_as_it_was(marker_data, monkeypatch):
    """ema_decay d: the weights validated and returned are w_1, then avg <- d * avg + (1 - d) * w_t after
    every step t; the trained weights, and their validation figures (val_*_raw), are those of a run
    without the average."""
    vocab, train, val = marker_data
    decay = 0.9
    runs = {}
    for ema in (0.0, decay):
        steps = []

        def recording_step(model, *args, **kwargs):
            optimizer_step(model, *args, **kwargs)
            steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})

        monkeypatch.setattr("imdb_rnn.train.optimizer_step", recording_step)
        # dropout on: the average must not draw random numbers the training would otherwise get
        params = small_arch(
            "lstm", epochs=3, patience=3, monitor="val_loss", ema_decay=ema, dropout=0.2, embed_dropout=0.2
        )
        torch.manual_seed(0)
        model_config, train_config = configs(params, len(vocab), COMMON)
        model, seen = model_config.build(), []
        state, history, summary, _ = fit(
            model,
            train,
            val,
            train_config,
            torch.device("cpu"),
            name="lstm",
            log=lambda row, module: seen.append(module),
        )
        runs[ema] = (state, history, steps, seen, model)
    plain_state, plain, plain_steps, plain_seen, plain_model = runs[0.0]
    state, history, steps, seen, model = runs[decay]
    assert [r["val_loss_raw"] for r in history] == [r["val_loss"] for r in plain]
    assert [r["val_accuracy_raw"] for r in history] == [r["val_accuracy"] for r in plain]
    assert "val_loss_raw" not in plain[0]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(steps, plain_steps) for k in a)
    averages = [dict(steps[0])]
    for weights in steps[1:]:
        averages.append({k: decay * averages[-1][k] + (1 - decay) * weights[k] for k in weights})
    # the returned state: the average at the end of the best epoch (every epoch has as many steps)
    end = summary["best_epoch"] * len(steps) // len(history) - 1
    assert all(torch.allclose(state[k], averages[end][k], atol=1e-6) for k in state)
    assert any(not torch.allclose(state[k], steps[end][k], atol=1e-3) for k in state)
    assert history[-1]["val_loss"] != history[-1]["val_loss_raw"]
    assert history[-1]["val_accuracy"] > 0.9  # the average learns the marker task too
    # log gets the module its row's validation figures are of: the average with it on, the model without
    assert all(module is seen[0] for module in seen) and seen[0] is not model
    assert all(module is plain_model for module in plain_seen)


def test_weight_averaging_resumes_as_if_never_interrupted(marker_data, monkeypatch, tmp_path):
    from imdb_rnn.train import Resume

    vocab, train, val = marker_data
    params = small_arch("lstm", epochs=3, patience=3, ema_decay=0.9, dropout=0.2, embed_dropout=0.2)

    def run(resume=None, fail_at=None):
        torch.manual_seed(0)
        model_config, train_config = configs(params, len(vocab), COMMON)
        calls = []

        def log(row, module):
            calls.append(row["epoch"])
            if row["epoch"] == fail_at and module is not None:
                raise KeyboardInterrupt

        return fit(
            model_config.build(), train, val, train_config, torch.device("cpu"), name="lstm", resume=resume, log=log
        )

    whole_state, whole, _, _ = run()
    resume = Resume(tmp_path / "resume.pt", "fingerprint")
    with pytest.raises(KeyboardInterrupt):
        run(resume, fail_at=2)  # the state after epoch 1 is on disk
    state, history, _, _ = run(resume)
    assert history == [
        dict(row, seconds=r["seconds"], tokens_per_second=r["tokens_per_second"]) for row, r in zip(whole, history)
    ]
    assert all(torch.equal(state[k], whole_state[k]) for k in state)


def test_fit_reads_top_to_bottom():
    """The loop itself stays short: the loss terms are objective.Objective's, the bookkeeping tracker.Tracker's."""
    import inspect

    assert len(inspect.getsource(fit).splitlines()) <= 80
