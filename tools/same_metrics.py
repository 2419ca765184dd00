"""Run `dvc repro` on the tests' tiny archive at two git revisions and compare every metrics/ file.

    python tools/same_metrics.py 6443712 HEAD

Shows that a change that should not change behaviour (a restructure) did not: each revision's
pipeline runs in a throwaway git + DVC repository built by that revision's own tests/conftest.py
(make_dvc_repo, tiny_params), with that revision's code on PYTHONPATH. Timings (any key or column
that holds seconds, a rate or a timestamp), pictures and the HTML report are left out of the
comparison; everything else must be identical, byte for byte for text files, value for value for JSON.
Exit status 1 when anything differs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING = ("seconds", "per_second", "timestamp", "date")  # parts of the names of keys that are timings
SKIPPED = (".png", ".html", ".md")  # pictures, the report, and the Markdown copy of leaderboard.json
BOOKKEEPING = (".gitignore",)  # what DVC writes beside the outputs it keeps, not a metric

BUILD = """
import sys
sys.path[:0] = [{src!r}, {tests!r}]
from conftest import make_dvc_repo
from synthetic import make_archive
from pathlib import Path
root = Path({root!r})
archive = make_archive(root / "tiny.tar.gz", 60, 20)
repo = make_dvc_repo(root, archive)
repo.commit("pipeline")
print(repo.root)
"""


def run_pipeline(repo_root, rev, work):
    """Check out `rev` into work/tree, build its tiny DVC repository in work/run, `dvc repro` it; return metrics/."""
    tree = work / "tree"
    subprocess.run(
        ["git", "-C", str(repo_root), "worktree", "add", "--detach", "-f", str(tree), rev],
        check=True,
        capture_output=True,
    )
    try:
        env = dict(os.environ, PYTHONPATH=str(tree / "src"), TQDM_DISABLE="1", DVC_NO_ANALYTICS="1")
        (work / "run").mkdir()
        script = BUILD.format(src=str(tree / "src"), tests=str(tree / "tests"), root=str(work / "run"))
        built = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        repo = Path(built.stdout.strip().splitlines()[-1])
        dvc = Path(sys.executable).with_name("dvc")
        result = subprocess.run([str(dvc), "repro"], cwd=repo, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"error: dvc repro at {rev} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return repo / "metrics"
    finally:
        subprocess.run(["git", "-C", str(repo_root), "worktree", "remove", "--force", str(tree)], capture_output=True)


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not any(t in k for t in TIMING)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def table_without_timings(text, sep):
    rows = [line.split(sep) for line in text.splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if not any(t in name for t in TIMING)] if rows else []
    return [[row[i] for i in keep if i < len(row)] for row in rows]


def comparable(path):
    if path.suffix == ".json":
        return without_timings(json.loads(path.read_text()))
    if path.suffix in (".tsv", ".csv"):
        return table_without_timings(path.read_text(), "\t" if path.suffix == ".tsv" else ",")
    return path.read_bytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="a git revision")
    parser.add_argument("after", help="a git revision")
    parser.add_argument(
        "--ignore-key",
        action="append",
        default=[],
        help="a JSON key added or changed on purpose (e.g. checkpoint), left out of the comparison",
    )
    args = parser.parse_args()
    repo_root = Path(__file__).resolve().parents[1]
    ignored = tuple(args.ignore_key)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = {}
        for side, rev in (("before", args.before), ("after", args.after)):
            (Path(tmp) / side).mkdir()
            metrics[side] = run_pipeline(repo_root, rev, Path(tmp) / side)
        files = {
            side: {
                p.relative_to(m)
                for p in m.rglob("*")
                if p.is_file() and p.suffix not in SKIPPED and p.name not in BOOKKEEPING
            }
            for side, m in metrics.items()
        }
        differ = sorted(files["before"] ^ files["after"])
        for name in differ:
            print(f"only {'before' if name in files['before'] else 'after'}: {name}")
        same = 0
        for name in sorted(files["before"] & files["after"]):
            old, new = (comparable(metrics[side] / name) for side in ("before", "after"))
            if ignored:
                old, new = (
                    json.loads(json.dumps(v), object_hook=lambda d: {k: x for k, x in d.items() if k not in ignored})
                    if isinstance(v, (dict, list))
                    else v
                    for v in (old, new)
                )
            if old == new:
                same += 1
            else:
                differ.append(name)
                print(f"differs: {name}")
        print(f"{same} metrics files identical (timings aside), {len(differ)} different or missing on one side")
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
