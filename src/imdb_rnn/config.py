"""One architecture's settings: the params.yaml schemas, and frozen dataclasses built from the checked sections.

An architecture's settings are `arch_defaults` overridden by its own section; `train` holds what
every training process shares (seed, device, threads...). The checkpoint stores ModelConfig as a dict.
"""

from dataclasses import asdict, dataclass, fields

from .cells import CELLS
from .model import POOLINGS, RecurrentClassifier
from .optim import LR_SCHEDULES
from .params import GROUPS, Param, check, read_architectures, read_params, read_seeds
from .pipeline import PipelineError

# early stopping's measure on the validation split, and whether higher is better
MONITORS = {"val_loss": False, "val_accuracy": True}

# an architecture: arch_defaults, overridden by its own section
ARCH_SCHEMA = {
    "cell": Param(str, choices=tuple(CELLS)),
    "bidirectional": Param(bool),
    "num_layers": Param(int, min=1, max=8),
    "pooling": Param(str, choices=POOLINGS),
    "embed_dim": Param(int, min=1, max=4096),
    "hidden_dim": Param(int, min=1, max=8192),
    "attention_dim": Param(int, min=1, max=4096, required=False),  # attention pooling only
    "dropout": Param((int, float), min=0, max=0.95),
    "embed_dropout": Param((int, float), min=0, max=0.95),
    "lr": Param(float, min=1e-7, max=1.0),
    # the rate over the run's `epochs`: constant, or decayed to 0 (linear, cosine); warm-up steps first
    "lr_schedule": Param(str, choices=LR_SCHEDULES, required=False),  # absent: constant
    "warmup_steps": Param(int, min=0, max=10_000_000, required=False),  # absent: 0
    "weight_decay": Param((int, float), min=0, max=1.0),
    "grad_clip": Param((int, float), min=0),  # 0 = no clipping
    "batch_size": Param(int, min=1, max=65536),
    "epochs": Param(int, min=1, max=1000),
    "monitor": Param(str, choices=MONITORS),  # what picks the best epoch and stops training
    "patience": Param(int, min=1, max=1000),  # epochs without a better monitored value before stopping
    "seq_len": Param(int, min=1, max=100_000),  # tokens read per review (at most tokenize.seq_len)
    "freeze_embeddings": Param(bool),  # keep the embedding fixed during training
    # adversarial training: size of the embedding perturbation, relative to each review's embedding norm (0 = off)
    "adversarial_eps": Param((int, float), min=0, max=1.0),
    # virtual adversarial training (Miyato et al., 2017): the same relative size, and the term's weight (0 = off)
    "vat_eps": Param((int, float), min=0, max=1.0),
    "vat_weight": Param((int, float), min=0, max=100.0),
    # entropy minimisation on the unlabelled reviews (Grandvalet & Bengio, 2005): the term's weight (0 = off)
    "entropy_weight": Param((int, float), min=0, max=100.0),
    # unlabelled reviews drawn per labelled one in each step, for the two terms above (0 = none)
    "unsup_ratio": Param((int, float), min=0, max=16.0),
    # weight averaging: the decay of an exponential moving average (EMA) of the weights, which validation
    # scores, early stopping follows and the checkpoint keeps (0 = off; 0.995 averages over about 200 steps)
    "ema_decay": Param((int, float), min=0, max=0.9999, required=False),  # absent: 0
}

# what every training process shares
TRAIN_SCHEMA = {
    # the training step's matrix products: float32, or bfloat16 under autocast (float32 weights and optimiser),
    # or auto: bfloat16 where it pays (runtime.training_precision), float32 elsewhere
    "precision": Param(str, choices=("float32", "bfloat16", "auto")),
    "device": Param(str, choices=("auto", "cpu", "cuda")),
    "threads": Param(
        int, min=0, max=256
    ),  # 0 = the cores this process may use (its CPU affinity), shared out among train.processes
    "eval_batch_size": Param(int, min=1, max=65536),
    "bucket_pool": Param(int, min=1, max=100_000),  # batches per length-sorting pool
    "processes": Param(int, min=1, max=1024),  # data-parallel processes (distributed.launch)
}


def arch_schema(cell):
    """The schema of an architecture section whose cell is `cell`: ARCH_SCHEMA plus the cell's own options."""
    return {**ARCH_SCHEMA, **(CELLS[cell].options if cell in CELLS else {})}


def check_cell_settings(name, settings):
    """Raise PipelineError for settings of architecture `name` that mean nothing for its cell: reading backwards
    with a cell that cannot, `last` pooling with one that does not carry its state on, and what the cell's
    own check refuses (cells.Cell)."""
    cell = CELLS[settings["cell"]]
    if settings["bidirectional"] and not cell.bidirectional:
        raise PipelineError(
            f"parameter {name}.bidirectional is true, but the {cell.name} cell cannot read a review "
            "backwards: set it to false"
        )
    if settings["pooling"] == "last" and not cell.carries_state:
        raise PipelineError(
            f"parameter {name}.pooling is last, but the {cell.name} cell does not carry its state from "
            "one span of steps to the next, which last pooling needs: use max, mean or attention"
        )
    wrong = cell.check(settings) if cell.check else None
    if wrong:
        raise PipelineError(f"parameter {name}.{wrong[0]} {wrong[1]}")


@dataclass(frozen=True)
class ModelConfig:
    """What builds a RecurrentClassifier (its constructor's arguments)."""

    vocab_size: int
    cell: str
    bidirectional: bool
    num_layers: int
    pooling: str
    embed_dim: int
    hidden_dim: int
    dropout: float
    embed_dropout: float
    attention_dim: int | None = None
    options: dict | None = None  # the cell's own settings (cells.Cell.options), None for a cell without any

    @classmethod
    def from_dict(cls, values):
        """From an architecture's settings (the cell's options among them) or a checkpoint's `model_config`
        (its options under `options`); other keys are ignored."""
        config = {f.name: values[f.name] for f in fields(cls) if f.name in values}
        if "options" not in config and values.get("cell") in CELLS:
            config["options"] = {k: values[k] for k in CELLS[values["cell"]].options if k in values} or None
        return cls(**config)

    def as_dict(self):
        return {k: v for k, v in asdict(self).items() if v is not None}

    def build(self):
        return RecurrentClassifier(**self.as_dict())


@dataclass(frozen=True)
class TrainConfig:
    """How one architecture trains: its optimisation settings and the shared `train` section."""

    lr: float
    weight_decay: float
    grad_clip: float
    batch_size: int
    epochs: int
    patience: int
    seq_len: int
    freeze_embeddings: bool
    adversarial_eps: float
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    vat_eps: float = 0.0
    vat_weight: float = 1.0
    entropy_weight: float = 0.0
    unsup_ratio: float = 0.0
    ema_decay: float = 0.0
    monitor: str = "val_loss"
    precision: str = "float32"
    pretrained: str = "none"  # none, word2vec or lm (params.yaml: pretrained_architectures)
    seed: int = 42
    device: str = "auto"
    threads: int = 0
    eval_batch_size: int = 256
    bucket_pool: int = 50
    processes: int = 1

    @classmethod
    def from_dict(cls, values):
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def as_dict(self):
        return asdict(self)


def is_architecture_section(section):
    """Whether a params.yaml section defines an architecture: it names a cell, or a base section it extends."""
    return isinstance(section, dict) and ("cell" in section or "extends" in section)


def architecture_section(params, name, chain=()):
    """Section `name` of params.yaml with what it extends filled in: a section with `extends: BASE` holds every
    setting of BASE's section (resolved alike) that it does not set itself, so a pretrained twin names its base
    instead of copying it. Raises PipelineError for a base that is no architecture's section, or a cycle."""
    section = params.get(name)
    if not isinstance(section, dict) or "extends" not in section:
        return section
    base = section["extends"]
    if not isinstance(base, str) or not is_architecture_section(params.get(base)):
        raise PipelineError(
            f"parameter {name}.extends is {base!r}, which no architecture section of params.yaml defines: "
            "name the section it builds on (e.g. extends: bilstm)"
        )
    if base == name or base in chain:
        raise PipelineError(f"parameter {name}.extends goes round in a circle ({' -> '.join([*chain, name, base])})")
    own = {key: value for key, value in section.items() if key != "extends"}
    return {**architecture_section(params, base, (*chain, name)), **own}


def arch_settings(params_path, name, seed=None):
    """(ModelConfig minus vocab_size as a dict, TrainConfig) of architecture `name` trained with `seed`
    (default: the first of params.yaml's seeds), checked before any work.

    The settings are arch_defaults' under the architecture's own section, and a section with `extends`
    takes its base's (architecture_section). Raises PipelineError for an unknown architecture, a bad value
    (named by the section it is in: arch_defaults.lr or gru.lr), a key missing from both sections, or
    attention pooling without attention_dim.
    """
    known = read_architectures(params_path)
    if name not in known:
        raise PipelineError(
            f"unknown architecture {name!r}: params.yaml lists {', '.join(known)} "
            "(architectures, pretrained_architectures, semi_supervised_architectures)"
        )
    params = read_params(params_path)
    # a cell's own options are known keys of its sections; arch_defaults may hold any cell's
    every_option = {key: spec for cell in CELLS.values() for key, spec in cell.options.items()}
    defaults = check("arch_defaults", params.get("arch_defaults") or {}, {**ARCH_SCHEMA, **every_option}, partial=True)
    section = architecture_section(params, name)
    schema = arch_schema({**defaults, **(section if isinstance(section, dict) else {})}.get("cell"))
    own = check(name, section, schema, partial=True)
    settings = {**defaults, **own}
    missing = [key for key, spec in schema.items() if spec.required and key not in settings]
    if missing:
        raise PipelineError(f"parameter {name}.{missing[0]} is set neither in {name} nor in arch_defaults: add it")
    check_cell_settings(name, settings)
    if settings["pooling"] == "attention" and "attention_dim" not in settings:
        raise PipelineError(f"parameter {name}.attention_dim is missing: attention pooling needs it")
    if settings.get("entropy_weight") and not settings.get("unsup_ratio"):
        raise PipelineError(
            f"parameter {name}.entropy_weight is {settings['entropy_weight']} but {name}.unsup_ratio is 0: "
            "entropy minimisation reads unlabelled reviews, so set unsup_ratio > 0 or entropy_weight: 0"
        )
    if settings.get("unsup_ratio") and not (settings.get("vat_eps") or settings.get("entropy_weight")):
        raise PipelineError(
            f"parameter {name}.unsup_ratio is {settings['unsup_ratio']} but neither vat_eps nor entropy_weight "
            "is on: the unlabelled reviews would only cost time, so set unsup_ratio: 0 or turn a term on"
        )
    common = check("train", params.get("train"), TRAIN_SCHEMA)
    seeds = read_seeds(params_path)
    return settings, TrainConfig.from_dict(
        {**settings, **common, "pretrained": GROUPS[known[name]], "seed": seeds[0] if seed is None else seed}
    )
