"""Shared fixtures: tiny aclImdb-shaped archives, stage runners and throwaway DVC repositories.

Everything here is generic so that any test file can use it; nothing touches the network.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from synthetic import make_archive

REPO_ROOT = Path(__file__).resolve().parents[1]
STAGES = REPO_ROOT / "stages"
REAL_ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "aclImdb_v1.tar.gz"

# what a DVC end-to-end test copies; src/ is copied too because the stage_code stage hashes it
# (the code that runs is this checkout's src/: script_env puts it first on PYTHONPATH)
PIPELINE_FILES = ("dvc.yaml", "params.yaml")
PIPELINE_DIRS = ("stages", "src/imdb_rnn")

TINY_PER_LABEL = 60  # reviews per split and label in the shared tiny archive

# Limits oneDNN and ATen's kernels to AVX2 (no bfloat16) on any x86 CPU: what a CPU without AVX-512 runs.
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def _native_bfloat16():
    from imdb_rnn.runtime import native_bfloat16

    return native_bfloat16("cpu")


# Tests of the bfloat16 path run it only where the CPU does: elsewhere the product refuses bfloat16,
# and the refusal has tests of its own. Marked `precision`: `make test` reruns those under AVX2_ONLY.
needs_native_bfloat16 = pytest.mark.skipif(
    not _native_bfloat16(),
    reason="this CPU runs no native bfloat16 "
    "(no AMX or AVX512-BF16, or oneDNN limited below it): the refusal is tested instead",
)
TINY_UNSUP = 20


# The files that take longest, longest first: `make test` hands whole files to the workers in this order
# (--dist loadfile --no-loadscope-reorder; xdist would otherwise order them by their number of tests),
# so that no three-minute pipeline file starts last while the other worker has nothing left to do.
LONGEST_FIRST = (
    "test_experiments.py",
    "test_scaling.py",
    "test_pipeline.py",
    "test_parallel_repro.py",
    "test_adding_an_architecture.py",
    "test_resume_and_ddp.py",
    "test_study.py",
    "test_predict.py",
    "test_check_params.py",
    "test_report.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests keep their order


def as_a_background_job():
    """preexec_fn for a process a test stops with a signal: as a shell starts `command &`, SIGINT ignored
    (a stage must stop on it all the same) and SIGHUP handled by default, even where the tests themselves
    run under nohup (whose ignored SIGHUP a stage keeps ignoring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def script_env(extra=None, progress=False):
    """Environment for a stage subprocess: quiet, offline, and without progress bars unless asked."""
    env = dict(os.environ)
    env.update(PYTHONUNBUFFERED="1", DVC_NO_ANALYTICS="1", PYTHONWARNINGS="ignore")
    # `python` in dvc.yaml's commands must be this interpreter (the venv with the package installed)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # ...and `imdb_rnn` this checkout's code, whatever the venv's editable install or PYTHONPATH points at
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    if not progress:
        env["TQDM_DISABLE"] = "1"  # bars are cosmetic; they would clutter the one-line error checks
    env.update(extra or {})
    return env


def dvc_args(script, args=()):
    """dvc.yaml's arguments for stages/<script>.py, for the `--arch` in args if any (params.stage_arguments).

    Stage scripts take every path as a required flag, and dvc.yaml is the one place that names
    them: a test passes only what it changes (argparse keeps the last of a repeated flag).
    """
    from imdb_rnn.params import stage_arguments

    args = [str(a) for a in args]
    return stage_arguments(
        REPO_ROOT / "dvc.yaml", script, args[args.index("--arch") + 1] if "--arch" in args else "ARCH"
    )


def run_script(script, *args, cwd, env=None, progress=False, timeout=300):
    """Run stages/<script>.py (with dvc.yaml's paths, overridden by `args`) or another script with
    this interpreter; return the CompletedProcess."""
    path = Path(script)
    if not path.suffix:
        path = STAGES / f"{script}.py"
        args = (*dvc_args(script, args), *args)
    return subprocess.run(
        [sys.executable, str(path), *map(str, args)],
        cwd=cwd,
        env=script_env(env, progress),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result, *fragments):
    """A failed command printed exactly one line, 'error: ...', containing every fragment."""
    assert result.returncode != 0, f"expected failure, got rc 0\nstdout: {result.stdout}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not a one-line error:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def ran_stages(output):
    """The stages a `dvc repro` / `dvc exp run` output says it ran, check_params left out: it reruns on
    any change to params.yaml and, when it passes, changes nothing downstream (tests/test_check_params.py)."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")} - {"check_params"}


def write_params(path, params):
    Path(path).write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def repo_params():
    """The project's params.yaml as a dict (a fresh copy each call), read as the stages read it."""
    from imdb_rnn.params import read_params

    return read_params(REPO_ROOT / "params.yaml")


def tiny_params(source, seq_len=64, hidden=8, epochs=1):
    """params.yaml shrunk for tests: a local archive, short sequences and tiny, one-epoch models."""
    from imdb_rnn.config import is_architecture_section

    params = repo_params()
    params["ingest"]["source"] = str(source)
    params["vocab"]["max_size"] = 300
    params["tokenize"]["seq_len"] = seq_len
    params["train"].update(device="cpu", threads=1, eval_batch_size=64)
    params["arch_defaults"].update(embed_dim=hidden, epochs=epochs, batch_size=16, seq_len=seq_len)
    # every architecture section, listed by default or not (lstm_lm, bilstm_mixed): a test may list it
    for arch in [
        name for name, section in params.items() if is_architecture_section(section) and name != "pretrain_lm"
    ]:
        section = params[arch]
        section.update(embed_dim=hidden, hidden_dim=hidden, epochs=epochs, batch_size=16, seq_len=seq_len)
        if "attention_dim" in section:
            section["attention_dim"] = hidden
    params["pretrain_embeddings"].update(dim=hidden, epochs=1)
    params["pretrain_lm"].update(
        embed_dim=hidden,
        hidden_dim=hidden,
        bptt=16,
        batch_size=16,
        max_tokens=2000,
        device="cpu",
        threads=1,
        val_fraction=0.05,
    )
    return params


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's in-process tests (use it with pytest.mark.usefixtures)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory):
    """A small aclImdb_v1.tar.gz: 60 reviews per split and label, 20 unlabelled; labels carried by marker words."""
    return make_archive(tmp_path_factory.mktemp("archive") / "aclImdb_v1.tar.gz", TINY_PER_LABEL, TINY_UNSUP)


@pytest.fixture
def archive_factory(tmp_path):
    """make_archive(...) into this test's tmp_path: archive_factory(name='x.tar.gz', **make_archive kwargs)."""

    def make(name="aclImdb_v1.tar.gz", **kwargs):
        return make_archive(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def run_stage(tmp_path):
    """run_stage('ingest', '--out', ..., cwd=tmp_path by default) -> CompletedProcess."""

    def run(script, *args, cwd=None, **kwargs):
        return run_script(script, *args, cwd=cwd or tmp_path, **kwargs)

    return run


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_archive):
    """The five data stages run once on the tiny archive; returns the folder (same layout as the repo).

    Holds params.yaml (tiny_params), data/{ingest,clean,vocab,tokens,split}/ and metrics/. Treat it as
    read-only: it is shared by the whole session.
    """
    root = tmp_path_factory.mktemp("tiny_data")
    write_params(root / "params.yaml", tiny_params(tiny_archive))
    for stage in ("ingest", "clean", "vocab", "tokenize_pad", "split"):
        result = run_script(stage, cwd=root)
        assert result.returncode == 0, f"{stage} failed:\n{result.stderr}"
    return root


class DvcRepo:
    """A throwaway git + DVC repository holding a copy of the pipeline definition."""

    def __init__(self, root):
        self.root = Path(root)

    def run(self, *cmd, check=True, timeout=600, env=None):
        result = subprocess.run(
            [str(c) for c in cmd], cwd=self.root, env=script_env(env), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(map(str, cmd))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def dvc(self, *args, **kwargs):
        return self.run(Path(sys.executable).parent / "dvc", *args, **kwargs)

    def git(self, *args, **kwargs):
        return self.run("git", *args, **kwargs)

    def commit(self, message="test"):
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    @property
    def params(self):
        return yaml.safe_load((self.root / "params.yaml").read_text())

    @params.setter
    def params(self, value):
        write_params(self.root / "params.yaml", value)

    def train_only(self, architectures, pretrained=None, seeds=None, **arch_changes):
        """params.yaml trimmed to these architectures ({name: word2vec, lm or semi_supervised} for
        `pretrained`; no report) and `seeds` (default: as they are), evaluated on one CPU thread;
        returns the params."""
        params = self.params
        params["architectures"] = list(architectures)
        params["pretrained_architectures"] = {
            kind: [n for n, k in (pretrained or {}).items() if k == kind] for kind in ("word2vec", "lm")
        }
        params["semi_supervised_architectures"] = [n for n, k in (pretrained or {}).items() if k == "semi_supervised"]
        if seeds is not None:
            params["seeds"] = list(seeds)
        params["report"]["architectures"] = [a for a in params["report"]["architectures"] if a in architectures]
        params["evaluate"].update(device="cpu", threads=1, batch_size=64)
        for arch in [*architectures, *(pretrained or {})]:
            params[arch].update(arch_changes)
        self.params = params
        return params


def make_dvc_repo(tmp_path, archive):
    """A git repository with dvc.yaml, params.yaml, stages/, src/imdb_rnn/ and .dvc/plots/ copied in and
    `dvc init` done.

    params.yaml is the project's, shrunk by tiny_params and pointed at a copy of `archive` beside
    the repository (in tmp_path). Nothing is committed: change params, then call repo.commit()
    before `repo.dvc('repro')` (dvclive wants a commit).
    """
    root = tmp_path / "repo"
    root.mkdir()
    for name in PIPELINE_FILES:
        shutil.copy(REPO_ROOT / name, root / name)
    for name in PIPELINE_DIRS:
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    archive = shutil.copy(archive, tmp_path / "aclImdb_v1.tar.gz")
    repo = DvcRepo(root)
    repo.git("init", "-q")
    repo.git("config", "user.email", "tests@example.invalid")
    repo.git("config", "user.name", "tests")
    repo.dvc("init", "-q")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", root / ".dvc" / "plots")  # the plots' templates
    shutil.copy(REPO_ROOT / ".dvcignore", root / ".dvcignore")  # Python's caches are no stage's dependency
    repo.dvc("config", "core.analytics", "false")
    repo.dvc("config", "core.site_cache_dir", str(tmp_path / "dvc_site_cache"))
    repo.params = tiny_params(os.path.relpath(archive, root))
    return repo


@pytest.fixture
def dvc_repo(tmp_path, tiny_archive):
    """make_dvc_repo in this test's tmp_path, on the shared tiny archive."""
    return make_dvc_repo(tmp_path, tiny_archive)


@pytest.fixture(scope="session")
def real_archive():
    """The real aclImdb_v1.tar.gz beside the repository (../shared/data/); skips where it is absent."""
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"real dataset not found at {REAL_ARCHIVE}")
    return REAL_ARCHIVE
