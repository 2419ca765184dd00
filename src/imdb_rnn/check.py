"""Check every section of params.yaml before any stage works: the check_params stage, first in dvc.yaml.

Each stage checks its own section when it starts, but a stage runs only when its turn comes: a bad
`gru.lr` would otherwise surface after an hour of data stages and other models. This runs every
stage's own check (the same functions, so the two cannot disagree), plus the agreements between
sections that a stage checks only against its inputs' files (a pretrained architecture's sizes
against the pretraining stage's).
"""

from .artifacts import PipelineError, write_text
from .baseline import SCHEMA as BASELINE_SCHEMA, check_settings as check_baseline
from .compare import SCHEMA as COMPARE_SCHEMA
from .config import TRAIN_SCHEMA, arch_settings
from .corpus import SCHEMA as VOCAB_SCHEMA
from .embeddings import SCHEMA as EMBEDDINGS_SCHEMA, check_settings as check_embeddings
from .evaluate import EVALUATE_SCHEMA
from .ingest import SCHEMA as INGEST_SCHEMA
from .lm import SCHEMA as LM_SCHEMA
from .params import GROUPS, load_section, read_architectures, read_params, read_seeds
from .pretrained import SHARED
from .split import SCHEMA as SPLIT_SCHEMA
from .text import CLEAN_SCHEMA, TOKENIZE_SCHEMA, check_truncation

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


def check_device(train):
    """train.precision against this machine's hardware, early. The train stage checks it again where it
    runs, since DVC does not rerun this cached stage on another machine; a cuda device that is not
    visible here is left to it too (pick_device)."""
    if train["precision"] != "bfloat16":
        return
    from .runtime import pick_device, require_precision  # torch: seconds of import, only for the one value that needs it

    try:
        device = pick_device(train["device"])
    except PipelineError:
        return
    require_precision(train["precision"], device, "train.precision")


def check_params(params_path, paths):
    """Check all of params.yaml as the stages will; then write paths["out"], a marker the first data
    stage depends on (its content never changes, so a passing check reruns nothing downstream).

    Raises PipelineError naming the first bad parameter and the fix.
    """
    sections = {}
    for section, (schema, extra) in SECTIONS.items():
        sections[section] = load_section(params_path, section, schema)
        if extra:
            extra(sections[section])
    check_device(load_section(params_path, "train", TRAIN_SCHEMA))
    seeds = read_seeds(params_path)
    known = read_architectures(params_path)
    settings_of = {}
    for name, group in known.items():
        for seed in seeds:
            settings_of[name], _ = arch_settings(params_path, name, seed)
        kind = GROUPS[group]
        if kind in SHARED:
            source, keys = SHARED[kind]
            for ours, theirs in keys.items():
                if settings_of[name][ours] != sections[source][theirs]:
                    raise PipelineError(f"parameter {name}.{ours} is {settings_of[name][ours]!r} but {source}.{theirs} is "
                                        f"{sections[source][theirs]!r}: {name} starts from {source}'s output, so make them agree")
    reported = (read_params(params_path).get("report") or {}).get("architectures") or []
    if not isinstance(reported, list):
        raise PipelineError(f"parameter report.architectures must be a list of architectures, got {reported!r}")
    for name in reported:
        if name not in known:
            raise PipelineError(f"report.architectures names {name!r}, which params.yaml does not train: "
                                f"pick among {', '.join(known)}")
        if settings_of[name]["pooling"] != "attention":
            raise PipelineError(f"report.architectures names {name!r}, which has no attention pooling to draw: "
                                "list attention-pooled architectures only")
    write_text(paths["out"], "params.yaml passed every stage's checks\n")
