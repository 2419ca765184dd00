"""README.md's tables come from the files the pipeline and the benchmarks write (tools/readme.py), never by hand."""

import subprocess
import sys

from conftest import REPO_ROOT

TOOL = REPO_ROOT / "tools" / "readme.py"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True)


def test_every_readme_block_is_its_file(tmp_path):
    assert run("--check").returncode == 0, run("--check").stderr
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("<!-- from: ") >= 2
    # a figure typed over in a block is caught, and the tool puts the file's back
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace("| `lstm` |", "| `lstm` | 0.99 |", 1), encoding="utf-8")
    checked = run("--check", "--readme", str(stale))
    assert (checked.returncode, checked.stderr) == (1, "error: README.md's block from metrics/chapter.md is stale: "
                                                       "run python tools/readme.py\n")
    assert run("--readme", str(stale)).returncode == 0
    assert stale.read_text(encoding="utf-8") == readme
