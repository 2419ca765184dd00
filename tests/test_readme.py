"""README.md's tables come from the files the pipeline and the benchmarks write (tools/readme.py), never by hand."""

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

TOOL = REPO_ROOT / "tools" / "readme.py"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True)


def test_every_readme_block_is_its_file(tmp_path):
    assert run("--check").returncode == 0, run("--check").stderr
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("<!-- from: ") >= 2
    assert len(readme.splitlines()) <= 150  # a front door: the rest is in docs/ and research/
    # a figure typed over in a block is caught, and the tool puts the file's back
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace("| `lstm` |", "| `lstm` | 0.99 |", 1), encoding="utf-8")
    checked = run("--check", "--readme", str(stale))
    assert (checked.returncode, checked.stderr) == (
        1,
        "error: README.md's block from metrics/chapter.md is stale: run python tools/readme.py\n",
    )
    assert run("--readme", str(stale)).returncode == 0
    assert stale.read_text(encoding="utf-8") == readme


def test_a_block_can_take_named_columns_and_the_first_rows(tmp_path, monkeypatch):
    """The leaderboard's front-door view: the named columns in the asked order, its first N rows, nothing typed."""
    sys.path.insert(0, str(TOOL.parent))
    import readme as tool

    monkeypatch.setattr(tool, "ROOT", tmp_path)
    (tmp_path / "board.md").write_text(
        "# Board\n\nprose\n\n| rank | name | score |\n|---:|:---|---:|\n"
        "| 1 | b | 0.9 |\n| 2 | a | 0.8 |\n| 3 | c | 0.7 |\n\nmore prose\n"
    )
    block = "<!-- from: board.md columns: score; name rows: 2 -->\nold\n<!-- end -->\n"
    assert tool.filled(block) == (
        "<!-- from: board.md columns: score; name rows: 2 -->\n"
        "| score | name |\n| ---: | :--- |\n| 0.9 | b |\n| 0.8 | a |\n<!-- end -->\n"
    )
    with pytest.raises(SystemExit, match="board.md has no column 'seed': its columns are rank, name, score"):
        tool.filled(block.replace("score; name", "seed"))
    # rows where a column holds a value, from the first table only (a study's summary holds several)
    (tmp_path / "study.md").write_text(
        "| rule | model | score |\n|---|---|---:|\n| loss | a | 0.1 |\n| acc | a | 0.2 |\n| acc | b | 0.3 |\n\n"
        "| rule | model | score |\n|---|---|---:|\n| acc | c | 0.4 |\n"
    )
    where = "<!-- from: study.md columns: model; score where: rule=acc -->\nold\n<!-- end -->\n"
    assert tool.filled(where) == where.replace("old\n", "| model | score |\n| --- | ---: |\n| a | 0.2 |\n| b | 0.3 |\n")
    with pytest.raises(SystemExit, match="study.md has no column 'stopping on'"):
        tool.filled(where.replace("rule=acc", "stopping on=acc"))
    readme = tmp_path / "README.md"
    readme.write_text(block, encoding="utf-8")
    shown = subprocess.run(
        [sys.executable, str(TOOL), "--readme", str(readme), "--show", "metrics/leaderboard.md"],
        capture_output=True,
        text=True,
    )
    assert (shown.returncode, shown.stderr) == (1, "error: README.md has no block from metrics/leaderboard.md\n")


def test_the_readme_shows_the_leaderboard_top_rows():
    shown = run("--show", "metrics/leaderboard.md")
    assert shown.returncode == 0, shown.stderr
    rows = shown.stdout.splitlines()
    assert rows[0].startswith("| rank | architecture |") and "McNemar p (Holm)" in rows[0]
    assert len(rows) == 2 + 8 and rows[2].startswith("| 1 |")
