"""Check every section of params.yaml before any stage works: the check_params stage, first in dvc.yaml.

Each stage checks its own section when it starts, but a stage runs only when its turn comes: a bad
`gru.lr` would otherwise surface after an hour of data stages and other models. This runs every
stage's own check (the same functions, so the two cannot disagree), plus the agreements between
sections that a stage checks only against its inputs' files (a pretrained architecture's sizes
against the pretraining stage's).
"""

import json
from pathlib import Path

from .baseline import SCHEMA as BASELINE_SCHEMA
from .baseline import check_settings as check_baseline
from .compare import SCHEMA as COMPARE_SCHEMA
from .compare import read_chapter
from .config import TRAIN_SCHEMA, ModelConfig, arch_settings
from .corpus import SCHEMA as VOCAB_SCHEMA
from .embeddings import SCHEMA as EMBEDDINGS_SCHEMA
from .embeddings import check_settings as check_embeddings
from .evaluate import EVALUATE_SCHEMA
from .ingest import SCHEMA as INGEST_SCHEMA
from .lm import SCHEMA as LM_SCHEMA
from .params import GROUPS, load_section, read_architectures, read_params, read_seeds
from .pipeline import PipelineError, write_text
from .pretrained import SHARED
from .runtime import check_memory, pick_device, require_precision
from .split import SCHEMA as SPLIT_SCHEMA
from .text import CLEAN_SCHEMA, RESERVED, TOKENIZE_SCHEMA, check_truncation

SECTIONS = {  # section: (schema, the stage's extra check)
    "ingest": (INGEST_SCHEMA, None),
    "clean": (CLEAN_SCHEMA, None),
    "vocab": (VOCAB_SCHEMA, None),
    "tokenize": (TOKENIZE_SCHEMA, check_truncation),
    "split": (SPLIT_SCHEMA, None),
    "pretrain_embeddings": (EMBEDDINGS_SCHEMA, check_embeddings),
    "pretrain_lm": (LM_SCHEMA, None),
    "baseline": (BASELINE_SCHEMA, check_baseline),
    "evaluate": (EVALUATE_SCHEMA, None),
    "compare": (COMPARE_SCHEMA, None),
}


def training_device(train):
    """The device train.device picks on this machine, or None for a cuda device that is not visible here
    (the train stage says so where it runs)."""
    try:
        return pick_device(train["device"])
    except PipelineError:
        return None


def check_fits(name, settings, config, sections, device):
    """An architecture's training against the memory of `device` (runtime.check_memory), at the longest
    reviews the data stages may make. The vocabulary is not known yet (vocab.max_size is only a cap), so
    only its reserved words count here: the train stage checks again with the real one."""
    model_config = ModelConfig.from_dict({**settings, "vocab_size": len(RESERVED)})
    check_memory(
        name,
        model_config,
        config.batch_size,
        min(config.seq_len, sections["tokenize"]["seq_len"]),
        device,
        config.processes,
    )


def check_params(params_path, paths):
    """Check all of params.yaml as the stages will; then write paths["out"], a marker the first data
    stage depends on (its content never changes, so a passing check reruns nothing downstream), and
    <architecture>.json in folder paths["settings"], the settings each train stage resolves.

    Raises PipelineError naming the first bad parameter and the fix.
    """
    sections = {}
    for section, (schema, extra) in SECTIONS.items():
        sections[section] = load_section(params_path, section, schema)
        if extra:
            extra(sections[section])
    # what depends on the machine, early; the train stage checks it again where it runs, since DVC
    # does not rerun this cached stage on another machine
    train = load_section(params_path, "train", TRAIN_SCHEMA)
    device = training_device(train)
    if device is not None:
        require_precision(train["precision"], device, "train.precision")
    seeds = read_seeds(params_path)
    known = read_architectures(params_path)
    settings_of, configs_of = {}, {}
    for name, group in known.items():
        for seed in seeds:
            settings_of[name], config = arch_settings(params_path, name, seed)
        configs_of[name] = config  # the seed aside, every seed's config is the same
        if device is not None:
            check_fits(name, settings_of[name], config, sections, device)
        kind = GROUPS[group]
        if kind in SHARED:
            source, keys = SHARED[kind]
            for ours, theirs in keys.items():
                if settings_of[name][ours] != sections[source][theirs]:
                    raise PipelineError(
                        f"parameter {name}.{ours} is {settings_of[name][ours]!r} but {source}.{theirs} is "
                        f"{sections[source][theirs]!r}: {name} starts from {source}'s output, so make them agree"
                    )
    read_chapter(params_path, known)
    reported = (read_params(params_path).get("report") or {}).get("architectures") or []
    if not isinstance(reported, list):
        raise PipelineError(f"parameter report.architectures must be a list of architectures, got {reported!r}")
    for name in reported:
        if name not in known:
            raise PipelineError(
                f"report.architectures names {name!r}, which params.yaml does not train: pick among {', '.join(known)}"
            )
        if settings_of[name]["pooling"] != "attention":
            raise PipelineError(
                f"report.architectures names {name!r}, which has no attention pooling to draw: "
                "list attention-pooled architectures only"
            )
    # each architecture's settings as its train stage resolves them (arch_defaults, the sections it extends,
    # its own; the shared train section): the stage depends on this file, so a change to a base section
    # retrains the twins that extend it, which DVC's params (one section per stage) cannot see
    for name in known:
        config = {key: value for key, value in configs_of[name].as_dict().items() if key != "seed"}
        resolved = {**settings_of[name], **config}
        write_text(Path(paths["settings"]) / f"{name}.json", json.dumps(resolved, indent=2, sort_keys=True) + "\n")
    write_text(paths["out"], "params.yaml passed every stage's checks\n")
