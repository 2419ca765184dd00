"""The test harness itself: stage subprocesses and DVC's stage commands run this checkout's code."""

import os
import subprocess
import sys

from conftest import REPO_ROOT, DvcRepo, run_script, script_env

WHERE = "import imdb_rnn; print(imdb_rnn.__file__)"
TESTED = str(REPO_ROOT / "src" / "imdb_rnn" / "__init__.py")


def decoy_checkout(tmp_path, monkeypatch):
    """Another checkout's imdb_rnn, found first on the import path (as a stale editable install would be)."""
    package = tmp_path / "other_checkout" / "src" / "imdb_rnn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    # the decoy does win where the harness does not step in
    plain = subprocess.run([sys.executable, "-c", WHERE], capture_output=True, text=True, cwd=tmp_path)
    assert plain.stdout.strip() == str(package / "__init__.py"), plain.stderr
    return package


def test_a_stage_subprocess_imports_the_tested_tree(tmp_path, monkeypatch):
    decoy_checkout(tmp_path, monkeypatch)
    (tmp_path / "where.py").write_text(WHERE + "\n")
    result = run_script(tmp_path / "where.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == TESTED


def test_a_dvc_stage_command_imports_the_tested_tree(tmp_path, monkeypatch):
    decoy_checkout(tmp_path, monkeypatch)
    repo = DvcRepo(tmp_path / "repo")
    repo.root.mkdir()
    repo.git("init", "-q")
    repo.dvc("init", "-q")
    repo.dvc("config", "core.site_cache_dir", str(tmp_path / "dvc_site_cache"))
    (repo.root / "where.py").write_text("print(__import__('imdb_rnn').__file__, file=open('where.txt', 'w'))\n")
    (repo.root / "dvc.yaml").write_text(
        "stages:\n  where:\n    cmd: python where.py\n    outs:\n      - where.txt:\n          cache: false\n"
    )
    repo.dvc("repro")
    assert (repo.root / "where.txt").read_text().strip() == TESTED
    assert script_env()["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT / "src")


def test_the_tests_themselves_import_the_tested_tree():
    import imdb_rnn

    assert imdb_rnn.__file__ == TESTED  # pyproject's pytest pythonpath, ahead of any installed copy
