"""Training a classifier: the optimisation step, the loop with early stopping and resume, and the train stage.

Runs as one process, or as one of N data-parallel processes (distributed.launch); the main process
writes every output.
"""

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import distributed
from .adversarial import EmbeddingPerturbation, adversarial_loss, entropy, random_state, virtual_adversarial_loss
from .artifacts import PipelineError, atomic_path, check_output_folder, read_json, write_json
from .batches import Reviews, bucketed
from .checkpoint import save_checkpoint
from .config import MONITORS, ModelConfig, arch_settings
from .inference import count_parameters, loss_and_accuracy, predict_logits
from .optim import make_optimizer, make_scheduler, optimizer_step
from .params import stage_of
from .pretrained import check_pretrained, initialise, load_pretrained
from .runtime import check_memory, configure_cpu, pick_device, seed_everything, training_precision
from .text import read_vocab


def unlabelled_batches(unlabelled, steps, config, epoch):
    """Row indices of `unlabelled` (batches.Reviews) for each of an epoch's `steps` labelled batches:
    round(config.unsup_ratio * config.batch_size) reviews each, length-bucketed, drawn afresh every
    epoch from a generator of its own (seed, epoch), so that the labelled batches stay those of a run
    without unlabelled reviews and a resumed run draws the same ones."""
    size = max(1, round(config.unsup_ratio * config.batch_size))
    rng = np.random.default_rng([config.seed, epoch])
    batches = []
    while len(batches) < steps:  # fewer unlabelled reviews than needed: a second pass, shuffled anew
        batches += bucketed(unlabelled.lengths, size, rng, config.bucket_pool)
    return batches[:steps]


def fit(model, train, val, config, device, log=None, name="model", resume=None, context=None, unlabelled=None):
    """Train with early stopping on config.monitor; return (best state dict, history, summary, timing).

    The best epoch is the first with the lowest validation loss (monitor val_loss) or the highest
    validation accuracy (val_accuracy); training stops after config.patience epochs without a better one.

    With config.ema_decay > 0 the weights validated, compared and returned are an exponential moving
    average (EMA) of the trained ones, a form of Polyak averaging (torch.optim.swa_utils.AveragedModel
    with get_ema_multi_avg_fn), updated after every optimiser step; val_loss and val_accuracy, and so
    early stopping, are the average's. Each history row then also gives the trained weights' own
    figures (val_loss_raw, val_accuracy_raw; a second validation pass an epoch), which for every epoch
    both run are those of the same run without the average.
    `log(row, module)` is called after each epoch with the module `row`'s validation figures are of
    (module None for the epochs a resumed run replays).

    `train` and `val` are batches.Reviews, `config` a TrainConfig. `resume` (a Resume) saves the
    whole training state after every epoch and, when a matching unfinished state is there at the
    start, continues after its last finished epoch with the same batches, dropout masks and weights
    as a run that was never interrupted. `context` (from distributed.setup) splits each epoch's
    batches over the data-parallel processes. Raises PipelineError when the loss stops being finite.

    The objective is cross entropy on the labelled batch, plus the terms config switches on
    (adversarial.py): the adversarial loss (adversarial_eps), the virtual adversarial term on the
    labelled and the unlabelled batch (vat_eps, times vat_weight) and the unlabelled batch's
    prediction entropy (entropy_weight). `unlabelled` (batches.Reviews, labels unused) is where the
    unlabelled batches come from when config.unsup_ratio > 0. With every term off, a step is plain
    cross entropy and the run is that of a model without these options.
    """
    context = context or distributed.Context()
    rng = np.random.default_rng(config.seed)
    model.to(device)
    # copied before any hook is registered on the model (the embedding perturbation's)
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if config.ema_decay
        else None
    )
    scored = averaged.module if averaged else model  # what validation scores and the run keeps
    validate = lambda module: loss_and_accuracy(predict_logits(module, val, config.eval_batch_size, device), val.labels)
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    # the schedule spans `epochs`, whether or not early stopping ends the run sooner; every epoch has as many steps
    steps_per_epoch = len(
        distributed.shard(
            bucketed(train.lengths, config.batch_size, np.random.default_rng(0), config.bucket_pool), context
        )
    )
    scheduler = make_scheduler(optimizer, config.lr_schedule, config.epochs * steps_per_epoch, config.warmup_steps)
    trained = distributed.wrap(model, context, device)
    loss_fn = nn.BCEWithLogitsLoss()
    if config.unsup_ratio and unlabelled is None:
        raise PipelineError(f"{name}: unsup_ratio is {config.unsup_ratio} but no unlabelled reviews were given")
    perturbed = config.adversarial_eps or config.vat_eps
    perturbation = EmbeddingPerturbation(model.embedding, keep_grad=bool(config.adversarial_eps)) if perturbed else None
    # bfloat16 matrix products with float32 weights, optimiser and loss (mixed precision)
    precision = training_precision(config.precision, device, model)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    higher_is_better = MONITORS[config.monitor]
    best = None
    best_state, history, stale = None, [], 0
    train_seconds, train_tokens = 0.0, 0
    saved = resume.load(context) if resume else None
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if averaged:
            averaged.load_state_dict(saved["averaged"])
        if scheduler:
            scheduler.load_state_dict(saved["scheduler"])
        rng.bit_generator.state = saved["batch_rng"]
        torch.set_rng_state(saved["torch_rng"][context.rank])
        best, best_state, history, stale = saved["best"], saved["best_state"], saved["history"], saved["stale"]
        train_seconds, train_tokens = saved["train_seconds"], saved["train_tokens"]
        print(f"{name}: resuming after epoch {len(history)} from {resume.path}", flush=True)
        for row in history:
            if log:
                log(row, None)
    for epoch in range(len(history) + 1, config.epochs + 1):
        model.train()
        batches = bucketed(train.lengths, config.batch_size, rng, config.bucket_pool)
        epoch_tokens = sum(train.tokens(rows) for rows in distributed.used(batches, context))
        # each labelled batch with its unlabelled one (None without), sharded together
        extra = (
            unlabelled_batches(unlabelled, len(batches), config, epoch) if config.unsup_ratio else [None] * len(batches)
        )
        epoch_tokens += sum(unlabelled.tokens(rows) for rows in distributed.used(extra, context) if rows is not None)
        start = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(
            distributed.shard(list(zip(batches, extra)), context),
            desc=f"{name} epoch {epoch}/{config.epochs}",
            unit="batch",
            leave=False,
            disable=None if context.is_main_process else True,
            file=sys.stderr,
        )
        for step, (rows, unlabelled_rows) in enumerate(bar, 1):
            ids, lengths, labels = train.batch(rows, device)
            state = random_state(device) if config.vat_eps else None
            with autocast():
                logits = trained(ids, lengths).float()
            loss = loss_fn(logits, labels)
            clean = perturbation.take() if perturbation else None

            def forward(module, ids=ids, lengths=lengths):
                def run():
                    with autocast():
                        return module(ids, lengths).float()

                return run

            def extra_backward():
                # each term's pass is followed by its own backward: DDP reduces gradients per pass
                if config.adversarial_eps:
                    adversarial_loss(
                        perturbation, clean[0], config.adversarial_eps, lambda: loss_fn(forward(trained)(), labels)
                    ).backward()
                if config.vat_eps:
                    (
                        config.vat_weight
                        * virtual_adversarial_loss(
                            perturbation, clean, logits, config.vat_eps, forward(trained), state, probe=forward(model)
                        )
                    ).backward()
                if unlabelled_rows is not None:
                    u_ids, u_lengths, _ = unlabelled.batch(unlabelled_rows, device)
                    u_state = random_state(device)
                    with torch.set_grad_enabled(bool(config.entropy_weight)):
                        u_logits = forward(trained, u_ids, u_lengths)()
                    u_clean = perturbation.take() if perturbation else None
                    if config.entropy_weight:
                        (config.entropy_weight * entropy(u_logits)).backward()
                    if config.vat_eps:
                        (
                            config.vat_weight
                            * virtual_adversarial_loss(
                                perturbation,
                                u_clean,
                                u_logits,
                                config.vat_eps,
                                forward(trained, u_ids, u_lengths),
                                u_state,
                                probe=forward(model, u_ids, u_lengths),
                            )
                        ).backward()

            optimizer_step(
                model,
                optimizer,
                loss,
                config.grad_clip,
                f"{name}: loss became {{loss}} at epoch {epoch}, batch {step}: "
                f"lower {name}.lr or set {name}.grad_clip; no checkpoint was written",
                extra_backward if perturbed or unlabelled_rows is not None else None,
                scheduler,
            )
            if averaged:
                averaged.update_parameters(model)
            total_loss += loss.item() * len(rows)
            correct += int(((logits.detach() > 0) == (labels > 0.5)).sum())
            seen += len(rows)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        total_loss, correct, seen = distributed.sum_over_ranks([total_loss, correct, seen], context)
        epoch_seconds = time.perf_counter() - start
        train_seconds += epoch_seconds
        train_tokens += epoch_tokens
        # every rank holds the same weights, so every rank scores the same validation set alike
        val_loss, val_acc = validate(scored)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / seen,
            "train_accuracy": correct / seen,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": epoch_seconds,
            "tokens_per_second": epoch_tokens / epoch_seconds,
        }
        if averaged:
            row["val_loss_raw"], row["val_accuracy_raw"] = validate(model)
        history.append(row)
        if log:
            log(row, scored)
        if context.is_main_process:
            print(
                f"{name} epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
                f"val loss {val_loss:.4f} acc {val_acc:.4f} | "
                + (
                    f"trained weights: val loss {row['val_loss_raw']:.4f} acc {row['val_accuracy_raw']:.4f} | "
                    if averaged
                    else ""
                )
                + f"{epoch_seconds:.0f}s, {row['tokens_per_second']:.0f} tokens/s",
                flush=True,
            )
        if best is None or (
            row[config.monitor] > best[config.monitor]
            if higher_is_better
            else row[config.monitor] < best[config.monitor]
        ):
            best, stale = row, 0
            best_state = snapshot(scored)
        else:
            stale += 1
        stop = stale >= config.patience
        if resume:
            resume.save(
                context,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "averaged": averaged.state_dict() if averaged else None,
                    "scheduler": scheduler.state_dict() if scheduler else None,
                    "batch_rng": rng.bit_generator.state,
                    "torch_rng": distributed.gather(torch.get_rng_state(), context),
                    "best": best,
                    "best_state": best_state,
                    "history": history,
                    "stale": stale,
                    "train_seconds": train_seconds,
                    "train_tokens": train_tokens,
                    "finished": stop or epoch == config.epochs,
                },
            )
        if stop:
            if context.is_main_process:
                print(f"{name}: no better {config.monitor} for {stale} epochs, stopping early", flush=True)
            break
    if perturbation:
        perturbation.remove()
    summary = {
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "val_loss": round(best["val_loss"], 6),
        "val_accuracy": round(best["val_accuracy"], 6),
        "train_loss": round(best["train_loss"], 6),
        "train_accuracy": round(best["train_accuracy"], 6),
        "parameters": count_parameters(model),
    }
    timing = {
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / len(history), 1),
        "tokens_per_second": round(train_tokens / train_seconds, 1),
        "device": str(device),
        "precision": precision,  # the one that ran (auto resolved)
        "threads": torch.get_num_threads(),
        "processes": context.world_size,
    }
    return best_state, history, summary, timing


class Resume:
    """The training state after the last finished epoch, in one file (a DVC `persist` output).

    A state is only taken up when its fingerprint (parameters, data, initial weights, process
    count) matches this run's and the run it came from had not finished; otherwise training
    starts from scratch. Written atomically by rank 0, so a kill leaves the previous epoch's state.
    """

    def __init__(self, path, fingerprint):
        self.path, self.fingerprint = Path(path), fingerprint

    def load(self, context):
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception:  # a state we cannot read is a state we do not resume from
            print(f"{self.path} is unreadable: training from scratch", flush=True)
            return None
        if saved.get("fingerprint") != self.fingerprint or saved.get("finished"):
            return None
        if len(saved["torch_rng"]) != context.world_size:
            return None
        return saved

    def save(self, context, state):
        if context.is_main_process:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
                torch.save({"fingerprint": self.fingerprint, **state}, f)


def snapshot(module):
    """A copy of `module`'s state_dict on the CPU ({name: tensor}), which later steps do not change."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def fingerprint(*parts):
    """A digest of everything that decides a training run: settings (JSON-able) and arrays."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, torch.Tensor):
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def pretrained_weights(config, model_config, vocab_sha256, name, path):
    """The pretraining output (pretrained.load_pretrained) that architecture `name` starts from, checked
    to fit its ModelConfig and vocabulary; None when config.pretrained is none. Raises PipelineError."""
    if config.pretrained == "none":
        return None
    if not path:
        raise PipelineError(
            f"{name} starts from {config.pretrained} but no pretraining output was given: "
            f"run it through dvc.yaml's train stage for {name}"
        )
    weights = load_pretrained(path, config.pretrained)
    check_pretrained(weights, config.pretrained, model_config, vocab_sha256, name, path)
    return weights


def run_inputs(params_path, name, seed):
    """({setting: value} of architecture `name` with `seed`, or the error reading them; {code file: digest})
    of everything a training run reads besides its data: the stage script and the imdb_rnn modules."""
    try:
        settings, config = arch_settings(params_path, name, seed)
        values = {**settings, **config.as_dict()}
    except PipelineError as err:
        values = {"params.yaml": str(err)}
    files = {
        Path(module.__file__)
        for key, module in list(sys.modules.items())
        if key.split(".")[0] == "imdb_rnn" and getattr(module, "__file__", None)
    }
    if sys.argv[0].endswith(".py") and Path(sys.argv[0]).is_file():
        files.add(Path(sys.argv[0]))
    return values, {path: hashlib.md5(path.read_bytes()).hexdigest() for path in sorted(files)}


def check_unchanged(started, params_path, name, seed):
    """Raise PipelineError when the settings or code that `started` (run_inputs) recorded changed while the run
    trained: DVC hashes a stage's dependencies after its command ends, so dvc.lock would pair the new
    settings and code with a model made by the old ones and call it up to date. Failing writes nothing,
    DVC records nothing, and the next `dvc repro` trains with what is there then."""
    values, code = run_inputs(params_path, name, seed)
    changed = [
        f"{key} {started[0].get(key)!r} -> {values.get(key)!r}"
        for key in sorted(set(values) | set(started[0]), key=str)
        if values.get(key) != started[0].get(key)
    ]
    if changed:
        raise PipelineError(
            f"params.yaml changed while {name} trained ({'; '.join(changed[:3])}): nothing written, since "
            "dvc.lock would record the new settings for a model of the old: run dvc repro again"
        )
    edited = [str(path) for path, digest in code.items() if started[1].get(path) != digest]
    if edited:
        raise PipelineError(
            f"{edited[0]} changed while {name} trained: nothing written, since dvc.lock would record the "
            "new code for a model of the old: run dvc repro again"
        )


def build_model(model_config, config, weights=None):
    """The classifier a training run starts from: every generator seeded with config.seed, then the
    model built and given the pretrained `weights` (pretrained_weights) as config says."""
    seed_everything(config.seed)
    return initialise(model_config.build(), config.pretrained, weights, config.freeze_embeddings)


def train_architecture(name, seed, params_path, paths, relaunch=None):
    """The train stage: train architecture `name` with `seed` as params.yaml says and write its outputs.

    `paths` maps train, val, meta, vocab (inputs), pretrained (the pretraining output, for a
    pretrained architecture), unlabelled (the tokenize stage's unsup.npz, for unsup_ratio > 0) and out, metrics, timing, live, resume (outputs) to files, as dvc.yaml
    names them. Everything is checked before any training: parameters, inputs and the pretraining
    output's fit. With train.processes N > 1, `relaunch` (script, argv; by default this process's
    own command line, the stage script) is started as N data-parallel processes instead
    (distributed.launch). Raises PipelineError on any problem.
    """
    started = run_inputs(params_path, name, seed)
    settings, config = arch_settings(params_path, name, seed)
    check_output_folder(paths["live"], "--live")
    meta = read_json(paths["meta"], "tokenizer settings")
    vocab = read_vocab(paths["vocab"])
    if len(vocab) != meta["vocab_size"]:
        raise PipelineError(
            f"{paths['vocab']} has {len(vocab)} entries but {paths['meta']} says {meta['vocab_size']}: rerun dvc repro"
        )
    model_config = ModelConfig.from_dict({**settings, "vocab_size": len(vocab)})
    if config.pretrained != "none" and not paths.get("pretrained"):
        raise PipelineError(
            f"{name} starts from {config.pretrained} but the stage got no --pretrained file: "
            f"run it through dvc.yaml's {stage_of('train', name, config.seed, params_path)} stage"
        )
    weights = pretrained_weights(config, model_config, meta["vocab_sha256"], name, paths.get("pretrained"))
    tokenize = dict(meta["tokenize"], seq_len=min(config.seq_len, meta["tokenize"]["seq_len"]))
    check_memory(
        name, model_config, config.batch_size, tokenize["seq_len"], pick_device(config.device), config.processes
    )
    train = Reviews.load(paths["train"], meta["tokenize"], tokenize["seq_len"], "training split")
    val = Reviews.load(paths["val"], meta["tokenize"], tokenize["seq_len"], "validation split")
    unlabelled = None
    if config.unsup_ratio:
        if not paths.get("unlabelled"):
            raise PipelineError(
                f"{name} draws unlabelled reviews (unsup_ratio {config.unsup_ratio}) but the stage got no "
                "--unlabelled file: list it under semi_supervised_architectures, whose train_semi_supervised "
                "stages pass data/tokens/unsup.npz"
            )
        unlabelled = Reviews.load(paths["unlabelled"], meta["tokenize"], tokenize["seq_len"], "unlabelled reviews")
        if (unlabelled.labels != -1).any():
            raise PipelineError(
                f"{paths['unlabelled']} holds labelled reviews: pass the tokenize stage's unsup.npz as --unlabelled"
            )

    if config.processes > 1 and not distributed.in_worker():
        distributed.launch(config.processes, *(relaunch or (sys.argv[0], sys.argv[1:])))
        return
    configure_cpu(config.threads)
    context = distributed.setup(pick_device(config.device).type)
    device = pick_device(config.device, context.local_rank)
    model = build_model(model_config, config, weights)
    start = fingerprint(
        config.as_dict(),
        model_config.as_dict(),
        context.world_size,
        train.ids,
        train.lengths,
        train.labels,
        val.ids,
        val.labels,
        *([unlabelled.ids] if unlabelled else []),
        *model.state_dict().values(),
    )
    resume = Resume(paths["resume"], start)

    from dvclive import Live

    live = Live(paths["live"], dvcyaml=False, save_dvc_exp=False, report=None) if context.is_main_process else None

    def log(row, module):
        if live:
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_loss_raw", "val_accuracy_raw"):
                if key in row:  # the raw figures with ema_decay only
                    split, metric = key.split("_", 1)
                    live.log_metric(f"{split}/{metric}", round(row[key], 6))
            live.next_step()

    try:
        state, history, summary, timing = fit(
            model, train, val, config, device, log=log, name=name, resume=resume, context=context, unlabelled=unlabelled
        )
    finally:
        if live:
            live.end()
    # only after a finished training: a failed or interrupted worker ends without it (artifacts._fail)
    distributed.shutdown(context)
    # DDP keeps every replica identical; the digest lets anyone check that from the logs
    print(
        f"{name}: rank {context.rank} of {context.world_size} ends with weights digest "
        f"{fingerprint(*model.state_dict().values())[:16]}",
        flush=True,
    )
    if not context.is_main_process:
        return
    check_unchanged(started, params_path, name, seed)
    summary = {"arch": name, "seed": config.seed, **summary}
    save_checkpoint(
        paths["out"],
        arch_name=name,
        config=model_config,
        state_dict=state,
        vocab=vocab,
        clean=meta["clean"],
        tokenize=tokenize,
        vocab_sha256=meta["vocab_sha256"],
        metrics={**summary, **timing},
    )
    write_json(paths["metrics"], summary)
    write_json(paths["timing"], {"arch": name, "seed": config.seed, **timing})
    print(
        f"{name} seed {config.seed}: best epoch {summary['best_epoch']}, val accuracy {summary['val_accuracy']:.4f}, "
        f"{timing['train_seconds']}s, {timing['tokens_per_second']:.0f} tokens/s"
    )
