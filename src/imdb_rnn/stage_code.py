"""The stage_code stage: which code each stage runs, as one small file per stage script that the stage depends on.

A stage's code is its script in stages/ and the imdb_rnn modules the script imports, directly or
through one another. DVC reruns a stage when a dependency's hash changes; listing every module by
hand in dvc.yaml goes stale, and depending on the whole package reruns every stage (every model)
for an edit to one report. Here `stage_code` hashes each script's modules into
data/stage_code/<script>.txt, and DVC's own rule does the rest: the file changes, and its stages
rerun, only when code that stage runs changed.
"""

import ast
import hashlib
from pathlib import Path

from .pipeline import PipelineError, write_text

PACKAGE = "imdb_rnn"


def imported_names(path):
    """The imdb_rnn modules `path` imports (dotted names below the package, e.g. "cells.registry"), anywhere in
    it: a function's import runs when the function does. Not inside a module's `__getattr__` (PEP 562), whose
    imports run only when code asks the package for that attribute (imdb_rnn's lazily named public API)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = path.parent
    lazy = {n for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "__getattr__" for n in ast.walk(f)}
    names = []
    for node in ast.walk(tree):
        if node in lazy:
            continue
        if isinstance(node, ast.Import):
            names += [a.name.split(".", 1)[1] for a in node.names if a.name.startswith(PACKAGE + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, up level - 1 packages
                base = here
                for _ in range(node.level - 1):
                    base = base.parent
                prefix = _package_parts(base)
            elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                prefix = []
            else:
                continue
            module = node.module.split(".") if node.module else []
            if not node.level:
                module = module[1:]  # below imdb_rnn
            parent = ".".join(prefix + module)
            names.append(parent)  # the module itself, or a package whose __init__ runs
            names += [f"{parent}.{a.name}".strip(".") for a in node.names]  # `from pkg import module`
    return [n for n in names if n]


def _package_parts(folder):
    """["cells"] for src/imdb_rnn/cells, [] for src/imdb_rnn: the folder's dotted path below the package."""
    parts = []
    while folder.name != PACKAGE:
        parts.insert(0, folder.name)
        folder = folder.parent
    return parts


def code_files(script, package):
    """The files stage `script` runs: itself, the package's __init__, and every module it imports, directly or not.

    `package` is the src/imdb_rnn folder. A subpackage counts as every module in it (cells/ imports all of
    its modules when it is imported). Raises PipelineError when the script or the package is missing.
    """
    script, package = Path(script), Path(package)
    if not script.is_file() or not (package / "__init__.py").is_file():
        raise PipelineError(f"{script if not script.is_file() else package} not found: run from the project root")
    seen, todo = {script}, [script]

    def add(path):
        if path.is_file() and path not in seen:
            seen.add(path)
            todo.append(path)

    add(package / "__init__.py")
    while todo:
        for name in imported_names(todo.pop()):
            target = package.joinpath(*name.split("."))
            if target.is_dir():
                for module in sorted(target.glob("*.py")):
                    add(module)
            else:
                add(target.with_suffix(".py"))
    return sorted(seen, key=str)


def stage_code(params_path, paths):
    """The stage_code stage (params_path unused): <script>.txt in folder paths["out"] for every script in
    paths["stages"], a line for each file it runs (md5 and path, sorted), from the modules in paths["package"]."""
    out = Path(paths["out"])
    scripts = sorted(Path(paths["stages"]).glob("*.py"))
    if not scripts:
        raise PipelineError(f"no stage scripts in {paths['stages']}: run from the project root")
    for script in scripts:
        files = code_files(script, paths["package"])
        lines = [f"{hashlib.md5(f.read_bytes()).hexdigest()}  {f.as_posix()}\n" for f in files]
        write_text(out / f"{script.stem}.txt", "".join(lines))
    print(f"stage_code: {len(scripts)} stage scripts -> {out}")
