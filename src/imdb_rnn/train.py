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
from tqdm import tqdm

from . import distributed
from .batches import Reviews, bucketed
from .checkpoint import save_checkpoint
from .config import ModelConfig, arch_settings
from .objective import Objective
from .optim import make_optimizer, make_scheduler, optimizer_step
from .params import stage_of
from .pipeline import PipelineError, atomic_path, check_output_folder, read_json, write_json
from .pretrained import check_pretrained, initialise, load_pretrained
from .runtime import check_memory, configure_cpu, pick_device, seed_everything, training_precision
from .text import read_vocab
from .tracker import Tracker

# what a non-finite loss's message tells the user to change
NONFINITE_FIX = "lower {name}.lr or set {name}.grad_clip; no checkpoint was written"


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

    `train` and `val` are batches.Reviews, `config` a TrainConfig; the loss is objective.Objective's,
    early stopping, the weights kept and their moving average tracker.Tracker's. `unlabelled`
    (batches.Reviews, labels unused) gives the unlabelled batches when config.unsup_ratio > 0.
    `log(row, module)` is called after each epoch with the module `row`'s validation figures are of
    (None for the epochs a resumed run replays). `resume` (a Resume) saves the whole training state
    after every epoch and, when a matching unfinished state is there at the start, continues after its
    last finished epoch with the same batches, dropout masks and weights as a run never interrupted.
    `context` (from distributed.setup) splits each epoch's batches over the data-parallel processes.
    Raises PipelineError when the loss stops being finite.
    """
    context = context or distributed.Context()
    if config.unsup_ratio and unlabelled is None:
        raise PipelineError(f"{name}: unsup_ratio is {config.unsup_ratio} but no unlabelled reviews were given")
    rng = np.random.default_rng(config.seed)
    model.to(device)
    tracker = Tracker(model, val, config, device)
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    # the schedule spans `epochs`, whether or not early stopping ends the run sooner; every epoch has as many steps
    first = bucketed(train.lengths, config.batch_size, np.random.default_rng(0), config.bucket_pool)
    steps = config.epochs * len(distributed.shard(first, context))
    scheduler = make_scheduler(optimizer, config.lr_schedule, steps, config.warmup_steps)
    trained = distributed.wrap(model, context, device)
    precision = training_precision(config.precision, device, model)
    objective = Objective(model, trained, config, device, precision)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "tracker": tracker, "rng": rng}
    train_seconds, train_tokens = resume.restore(parts, context, name) if resume else (0.0, 0)
    for row in tracker.history if log else []:  # a resumed run's finished epochs
        log(row, None)
    for epoch in range(len(tracker.history) + 1, config.epochs + 1):
        model.train()
        batches = bucketed(train.lengths, config.batch_size, rng, config.bucket_pool)
        tokens = sum(train.tokens(rows) for rows in distributed.used(batches, context))
        # each labelled batch with its unlabelled one (None without), sharded together
        extra = (
            unlabelled_batches(unlabelled, len(batches), config, epoch) if config.unsup_ratio else [None] * len(batches)
        )
        tokens += sum(unlabelled.tokens(rows) for rows in distributed.used(extra, context) if rows is not None)
        start = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        pairs = distributed.shard(list(zip(batches, extra)), context)
        bar = progress(pairs, f"{name} epoch {epoch}/{config.epochs}", context)
        for step, (rows, unlabelled_rows) in enumerate(bar, 1):
            ids, lengths, labels = train.batch(rows, device)
            loss, logits = objective.cross_entropy(ids, lengths, labels)
            other_terms = objective.other_terms(unlabelled, unlabelled_rows)
            error = f"{name}: loss became {{loss}} at epoch {epoch}, batch {step}: {NONFINITE_FIX.format(name=name)}"
            optimizer_step(model, optimizer, loss, config.grad_clip, error, other_terms, scheduler)
            tracker.step()
            total_loss += loss.item() * len(rows)
            correct += int(((logits.detach() > 0) == (labels > 0.5)).sum())
            seen += len(rows)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}")
        total_loss, correct, seen = distributed.sum_over_ranks([total_loss, correct, seen], context)
        seconds = time.perf_counter() - start
        train_seconds, train_tokens = train_seconds + seconds, train_tokens + tokens
        # every rank holds the same weights, so every rank scores the same validation set alike
        row = tracker.end_epoch(epoch, total_loss / seen, correct / seen, seconds, tokens)
        if log:
            log(row, tracker.scored)
        if context.is_main_process:
            print(epoch_line(name, row), flush=True)
        stop = tracker.should_stop(row)
        if resume:
            resume.save_run(parts, context, train_seconds, train_tokens, finished=stop or epoch == config.epochs)
        if stop:
            if context.is_main_process:
                print(f"{name}: no better {config.monitor} for {tracker.stale} epochs, stopping early", flush=True)
            break
    objective.remove()
    timing = run_timing(train_seconds, train_tokens, len(tracker.history), device, precision, context)
    return tracker.best_state, tracker.history, tracker.summary(), timing


def run_timing(train_seconds, train_tokens, epochs, device, precision, context):
    """A run's timing figures: seconds and tokens/s of training (validation aside) and where it ran."""
    return {
        "train_seconds": round(train_seconds, 1),
        "seconds_per_epoch": round(train_seconds / epochs, 1),
        "tokens_per_second": round(train_tokens / train_seconds, 1),
        "device": str(device),
        "precision": precision,  # the one that ran (auto resolved)
        "threads": torch.get_num_threads(),
        "processes": context.world_size,
    }


def progress(batches, description, context):
    """A progress bar over an epoch's batches on stderr, shown by the main process alone."""
    disable = None if context.is_main_process else True
    return tqdm(batches, desc=description, unit="batch", leave=False, disable=disable, file=sys.stderr)


def epoch_line(name, row):
    """The console line of one epoch's history row."""
    line = f"{name} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} | "
    line += f"val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} | "
    if "val_loss_raw" in row:
        line += f"trained weights: val loss {row['val_loss_raw']:.4f} acc {row['val_accuracy_raw']:.4f} | "
    return line + f"{row['seconds']:.0f}s, {row['tokens_per_second']:.0f} tokens/s"


class Resume:
    """The training state after the last finished epoch, in one file (a DVC `persist` output).

    A state is only taken up when its fingerprint (parameters, data, initial weights, process
    count) matches this run's and the run it came from had not finished; otherwise training
    starts from scratch. Written atomically by rank 0, so a kill leaves the previous epoch's state.
    A run's parts are {model, optimizer, scheduler (or None), tracker (tracker.Tracker), rng (the
    batch order's numpy Generator)}; torch's generator is each process's own.

    With `spare` (a folder: spare_folder()), an unfinished state is also kept there under its
    fingerprint, and taken up from there when `path` has none: a temporary or queued DVC experiment
    trains in a copy of the project that DVC deletes when it ends, interrupted or not, so this is
    how its rerun resumes. A finished run removes its spare state.
    """

    def __init__(self, path, fingerprint, spare=None):
        self.path, self.fingerprint = Path(path), fingerprint
        self.spare = Path(spare) / f"{fingerprint[:32]}.pt" if spare else None
        self.source = self.path

    def load(self, context):
        for path in [self.path] + ([self.spare] if self.spare else []):
            if not path.exists():
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a state we cannot read is a state we do not resume from
                print(f"{path} is unreadable: training from scratch", flush=True)
                continue
            if saved.get("fingerprint") != self.fingerprint or saved.get("finished"):
                continue
            if len(saved["torch_rng"]) != context.world_size:
                continue
            self.source = path
            return saved
        return None

    def restore(self, parts, context, name):
        """Put a matching saved state back into `parts`; return (train seconds, train tokens) so far."""
        saved = self.load(context)
        if not saved:
            return 0.0, 0
        parts["model"].load_state_dict(saved["model"])
        parts["optimizer"].load_state_dict(saved["optimizer"])
        parts["tracker"].load_state_dict(saved)
        if parts["scheduler"]:
            parts["scheduler"].load_state_dict(saved["scheduler"])
        parts["rng"].bit_generator.state = saved["batch_rng"]
        torch.set_rng_state(saved["torch_rng"][context.rank])
        print(f"{name}: resuming after epoch {len(saved['history'])} from {self.source}", flush=True)
        return saved["train_seconds"], saved["train_tokens"]

    def save_run(self, parts, context, train_seconds, train_tokens, finished):
        """Save the run's state after a finished epoch (every data-parallel process calls it; rank 0 writes)."""
        scheduler = parts["scheduler"]
        state = {
            "model": parts["model"].state_dict(),
            "optimizer": parts["optimizer"].state_dict(),
            "scheduler": scheduler.state_dict() if scheduler else None,
            "batch_rng": parts["rng"].bit_generator.state,
            "torch_rng": distributed.gather(torch.get_rng_state(), context),  # every rank takes part
            **parts["tracker"].state_dict(),
            "train_seconds": train_seconds,
            "train_tokens": train_tokens,
            "finished": finished,
        }
        self.save(context, state)

    def save(self, context, state):
        if not context.is_main_process:
            return
        for path in [self.path] + ([self.spare] if self.spare and not state.get("finished") else []):
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                torch.save({"fingerprint": self.fingerprint, **state}, f)
        if self.spare and state.get("finished"):
            self.spare.unlink(missing_ok=True)


def spare_folder(cwd=None):
    """Where a training run inside a temporary or queued DVC experiment keeps a spare copy of its state
    (Resume), outside the experiment's copy of the project: <project>/.dvc/tmp/resume. DVC 3 runs a queued
    experiment in <project>/.dvc/tmp/exps/<name>/ and `dvc exp run --temp` in
    <project>/.dvc/tmp/exps/standalone/<name>/; anywhere else, None (the workspace's own data/resume/
    outlives the run)."""
    here = Path(cwd or Path.cwd()).resolve()
    for exps in here.parents[:2]:  # <name>'s parent, or standalone's
        if exps.name == "exps" and exps.parent.name == "tmp" and exps.parent.parent.name == ".dvc":
            return exps.parent.parent / "tmp" / "resume"
    return None


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
    pretrained architecture), unlabelled (the tokenize stage's unsup.npz, for unsup_ratio > 0) and out,
    metrics, timing, live, resume (outputs) to files, as dvc.yaml names them. Everything is checked
    before any training: parameters, inputs and the pretraining output's fit. With train.processes
    N > 1, `relaunch` (script, argv; by default this process's own command line, the stage script)
    is started as N data-parallel processes instead (distributed.launch). Raises PipelineError on any problem.
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
    spare = spare_folder()
    resume = Resume(paths["resume"], start, spare)
    if spare and context.is_main_process:
        print(f"{name}: in a temporary DVC experiment: its training state is also kept in {spare}, so a rerun resumes")

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
    # only after a finished training: a failed or interrupted worker ends without it (pipeline._fail)
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
