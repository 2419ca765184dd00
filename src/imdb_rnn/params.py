"""Read one section of params.yaml and check it before any work starts."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from .artifacts import PipelineError


@dataclass(frozen=True)
class Param:
    type: type | tuple
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    required: bool = True


def check(section_name, values, schema):
    """Validate a mapping against `schema` ({key: Param}); return it with the keys checked."""
    if not isinstance(values, dict):
        raise PipelineError(f"params section '{section_name}' must be a mapping, got {type(values).__name__}")
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise PipelineError(
            f"unknown parameter {section_name}.{unknown[0]}: known keys are {', '.join(sorted(schema))}"
        )
    for key, spec in schema.items():
        name = f"{section_name}.{key}"
        if key not in values:
            if spec.required:
                raise PipelineError(f"parameter {name} is missing from params.yaml: add it")
            continue
        value = values[key]
        types = spec.type if isinstance(spec.type, tuple) else (spec.type,)
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
    return dict(values)


def read_params(params_path):
    """The whole params.yaml as a dict; a missing or malformed file is a one-line error."""
    path = Path(params_path)
    if not path.exists():
        raise PipelineError(f"params file {path} is missing: run from the project root or pass --params")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"params file {path} is not valid YAML: {str(err).splitlines()[0]}")


def load_section(params_path, section, schema):
    """Load `section` of the YAML file at `params_path` and validate it against `schema`."""
    path = Path(params_path)
    params = read_params(path)
    if section not in params:
        raise PipelineError(f"params file {path} has no '{section}' section: add it (see README)")
    return check(section, params[section], schema)
