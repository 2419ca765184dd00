"""Errors and atomic file writes shared by every stage.

A stage that is killed must never leave a file that looks finished, so every output is written
to a temporary file beside its target and renamed into place only once it is complete.
"""

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


class PipelineError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path, what="file"):
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{what} {path} is missing: run the stage that makes it (dvc repro)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PipelineError(f"{what} {path} is not valid JSON ({err}): rerun the stage that makes it")


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path, **arrays):
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path, what="array file"):
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{what} {path} is missing: run the stages before it (dvc repro)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # zipfile/npy errors come in many types
        raise PipelineError(f"{what} {path} is unreadable ({err}): rerun the stage that makes it")


def run_main(main):
    """Run a stage or command `main`, turning a PipelineError into a one-line message and exit 1."""
    try:
        return main()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
