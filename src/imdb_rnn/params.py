"""Read one section of params.yaml and check it before any work starts.

params.yaml is read with the YAML rules DVC itself uses (ruamel.yaml's safe loader, YAML 1.2), so
a value that `dvc exp run -S` writes, such as `lr: 1e-05`, means here what `dvc params diff` shows.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from .pipeline import PipelineError


@dataclass(frozen=True)
class Param:
    type: type | tuple
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    required: bool = True


def check(section_name, values, schema, partial=False):
    """Validate a mapping against `schema` ({key: Param}); return a checked copy (ints given for floats become floats).

    partial=True checks the keys present and requires none (a section of defaults or overrides).
    Raises PipelineError naming the first bad key and what it must be.
    """
    if not isinstance(values, dict):
        raise PipelineError(f"params section '{section_name}' must be a mapping, got {type(values).__name__}")
    values = dict(values)
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise PipelineError(
            f"unknown parameter {section_name}.{unknown[0]}: known keys are {', '.join(sorted(schema))}"
        )
    for key, spec in schema.items():
        name = f"{section_name}.{key}"
        if key not in values:
            if spec.required and not partial:
                raise PipelineError(f"parameter {name} is missing from params.yaml: add it")
            continue
        value = values[key]
        types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
        if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
            value = values[key] = float(value)  # `-S lr=1` writes an int where a float is meant
        if isinstance(value, float) and not math.isfinite(value):
            raise PipelineError(f"parameter {name} must be a finite number, got {value!r}")
        # bool is an int in Python; a flag given as a number (or a number as a flag) is a mistake
        if isinstance(value, bool) != (bool in types) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise PipelineError(f"parameter {name} must be {wanted}, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise PipelineError(f"parameter {name} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
        if spec.min is not None and value < spec.min:
            raise PipelineError(f"parameter {name} must be >= {spec.min}, got {value!r}")
        if spec.max is not None and value > spec.max:
            raise PipelineError(f"parameter {name} must be <= {spec.max}, got {value!r}")
    return values


def parse_yaml(text):
    """YAML text as Python objects, by the rules DVC reads params.yaml with (dvc.utils.serialize.parse_yaml).

    Raises ruamel.yaml.YAMLError on malformed text.
    """
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(text) or {}


def read_params(params_path):
    """The whole params.yaml as a dict; a missing or malformed file is a one-line error."""
    from ruamel.yaml import YAMLError

    path = Path(params_path)
    if not path.exists():
        raise PipelineError(f"params file {path} is missing: run from the project root or pass --params")
    try:
        params = parse_yaml(path.read_text(encoding="utf-8"))
    except YAMLError as err:
        raise PipelineError(f"params file {path} is not valid YAML: {' '.join(str(err).split())}")
    if not isinstance(params, dict):
        raise PipelineError(f"params file {path} must be a mapping of sections, got {type(params).__name__}")
    return params


def load_section(params_path, section, schema):
    """Load `section` of the YAML file at `params_path` and validate it against `schema`."""
    path = Path(params_path)
    params = read_params(path)
    if section not in params:
        raise PipelineError(f"params file {path} has no '{section}' section: add it (see README)")
    return check(section, params[section], schema)


BASELINE = "baseline"  # the bag-of-n-grams model of the baseline stage


PRETRAINED = ("word2vec", "lm")  # the pretraining stages whose output can initialise a classifier

# each list of architectures, by the stages that train them (dvc.yaml: train, train_word2vec,
# train_lm, train_semi_supervised), and the initial weights its architectures start from
GROUPS = {"none": "none", "word2vec": "word2vec", "lm": "lm", "semi_supervised": "word2vec"}


def read_architectures(params_path):
    """{name: group} of every trained model: the list `architectures` (group none: random initial
    weights), each list of `pretrained_architectures` (word2vec: [...], lm: [...]), then
    `semi_supervised_architectures` (semi_supervised: from word2vec, also trained on the unlabelled
    reviews). GROUPS[group] is the model's initial weights.

    These are what "architecture" means everywhere (train, compare, report, predict). Raises
    PipelineError when a list is malformed, names a model twice, or names a section that is missing.
    """
    path = Path(params_path)
    params = read_params(path)
    names = params.get("architectures")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PipelineError(f"parameter architectures in {path} must be a non-empty list of section names")
    pretrained = params.get("pretrained_architectures") or {}
    if (
        not isinstance(pretrained, dict)
        or set(pretrained) - set(PRETRAINED)
        or not all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in pretrained.values())
    ):
        raise PipelineError(
            f"parameter pretrained_architectures in {path} must map {' and '.join(PRETRAINED)} "
            f"to lists of section names, got {pretrained!r}"
        )
    semi = params.get("semi_supervised_architectures") or []
    if not isinstance(semi, list) or not all(isinstance(n, str) for n in semi):
        raise PipelineError(
            f"parameter semi_supervised_architectures in {path} must be a list of section names, got {semi!r}"
        )
    groups = {**pretrained, "semi_supervised": semi}
    initial = {**dict.fromkeys(names, "none")}
    everything = list(names)
    for group in ("word2vec", "lm", "semi_supervised"):
        everything += groups.get(group, [])
        initial.update(dict.fromkeys(groups.get(group, []), group))
    if len(set(everything)) != len(everything) or BASELINE in everything:
        raise PipelineError(
            f"the architecture lists in {path} name an architecture twice (or name {BASELINE!r}): {everything}"
        )
    missing = [n for n in everything if not isinstance(params.get(n), dict)]
    if missing:
        raise PipelineError(f"architecture {missing[0]!r} is listed in {path} but has no section there: add one")
    return initial


def read_seeds(params_path):
    """The training seeds: params.yaml's `seeds`, a non-empty list of distinct integers >= 0.

    dvc.yaml trains and evaluates every architecture once per seed. Raises PipelineError otherwise.
    """
    path = Path(params_path)
    seeds = read_params(path).get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise PipelineError(
            f"parameter seeds in {path} must be a non-empty list of integers >= 0, got {seeds!r}: "
            "e.g. seeds: [42, 7, 11]"
        )
    if len(set(seeds)) != len(seeds):
        raise PipelineError(f"parameter seeds in {path} names a seed twice: {seeds}")
    return seeds


def first_seed(params_path="params.yaml"):
    """The first of params.yaml's seeds, or 42 when it cannot be read: for hints and defaults only."""
    try:
        return read_seeds(params_path)[0]
    except PipelineError:
        return 42


def best_by_validation(val_accuracy):
    """The seed of the highest validation accuracy in {seed: accuracy}; ties go to the first listed.

    How an architecture's seeds are chosen between everywhere (leaderboard, imdb-predict, report): never by test.
    """
    order = list(val_accuracy)
    return max(order, key=lambda seed: (val_accuracy[seed], -order.index(seed)))


def stage_of(kind, arch, seed=None, params_path="params.yaml"):
    """The dvc.yaml stage that runs `kind` ('train' or 'evaluate') for `arch` with `seed`, for hints in error messages.

    `train@arch-seed`, or `train_word2vec@...` / `train_lm@...` / `train_semi_supervised@...` for the other groups.
    Without a seed, the first of params.yaml's seeds (42 when params.yaml cannot be read).
    """
    try:
        initial = read_architectures(params_path).get(arch, "none")
    except PipelineError:
        initial = "none"
    seed = first_seed(params_path) if seed is None else seed
    return f"{kind}@{arch}-{seed}" if initial == "none" else f"{kind}_{initial}@{arch}-{seed}"


def checkpoint_path(models_dir, arch, seed):
    """Where the train stage writes `arch`'s checkpoint for `seed` (as dvc.yaml names it)."""
    return Path(models_dir) / arch / f"seed{seed}.pt"


def retrain_hint(path, arch=None):
    """`dvc repro -f <the stage that trains it>` for checkpoint `path` (data/models/<arch>/seed<seed>.pt)."""
    path = Path(path)
    seed = path.stem[4:] if path.stem.startswith("seed") and path.stem[4:].isdigit() else None
    return f"dvc repro -f {stage_of('train', arch or path.parent.name, seed)}"


def stage_arguments(dvc_yaml, script, arch="ARCH", seed=42):
    """The arguments dvc.yaml's command gives stages/<script>.py (its paths), for architecture `arch` and `seed`.

    For tests and benchmarks that run a stage outside DVC: dvc.yaml stays the one place that names paths.
    """
    import shlex

    stages = parse_yaml(Path(dvc_yaml).read_text())["stages"]
    cmd = next(
        stage.get("do", stage)["cmd"]
        for stage in stages.values()
        if f"stages/{script}.py" in stage.get("do", stage)["cmd"]
    )
    words = shlex.split(cmd.replace("${item.arch}", arch).replace("${item.seed}", str(seed)))
    return words[words.index(f"stages/{script}.py") + 1 :]
