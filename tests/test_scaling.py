"""Scaling out with DVC: a shared remote, queued experiments in parallel, two `dvc repro`s at once, a killed repro.

One throwaway repository (conftest's dvc_repo, built once for the module) runs the whole pipeline
with a single tiny architecture; each test works on its own copy of it, so the ~30 s repro is paid
once. A copy is a full git + DVC repository: the workspace, .git and .dvc/cache travel together
(DVC's default cache type copies files, so nothing links back to the original).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import TINY_PER_LABEL, TINY_UNSUP, DvcRepo, make_dvc_repo, script_env
from conftest import ran_stages as ran

ARCH = "gru"
LONG_EPOCHS = 40  # the lock and kill tests retrain gru this long, to act while it trains
DVC = Path(sys.executable).parent / "dvc"
# DVC 3.67's two lock errors: the repository lock (held between stages) and the per-path rwlock
# (held while a stage's command runs; `dvc repro` releases the repository lock meanwhile)
LOCK_ERROR = re.compile(r"is busy, it is being blocked by|Unable to acquire lock")


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_archive):
    """conftest's dvc_repo with one architecture, `dvc repro` done and everything committed. Read-only."""
    repo = make_dvc_repo(tmp_path_factory.mktemp("scaling"), tiny_archive)
    params = repo.train_only([ARCH])
    params["vocab"]["min_freq"] = 1
    repo.params = params
    repo.commit("pipeline")  # dvclive wants a commit
    repo.dvc("repro")
    repo.commit("repro")
    return repo


def copy_repo(built, tmp_path):
    """A private copy of the built repository (with the archive beside it, as in dvc_repo)."""

    def skip_dvc_tmp(folder, names):  # .dvc/tmp: the original's locks and queue state
        return ["tmp"] if Path(folder) == built.root / ".dvc" else []

    root = Path(shutil.copytree(built.root, tmp_path / "repo", symlinks=True, ignore=skip_dvc_tmp))
    shutil.copy(built.root.parent / "aclImdb_v1.tar.gz", tmp_path / "aclImdb_v1.tar.gz")
    repo = DvcRepo(root)
    repo.dvc("config", "--local", "core.site_cache_dir", str(tmp_path / "dvc_site_cache"))
    return repo


def status(repo):
    return json.loads(repo.dvc("status", "--json").stdout)


def status_cloud(repo):
    """What `dvc status --cloud` finds missing from (or different on) the default remote."""
    return json.loads(repo.dvc("status", "--cloud", "--json").stdout)


def train_longer(repo):
    """Change gru's params so that `dvc repro` retrains it (and evaluate, compare) for LONG_EPOCHS epochs."""
    params = repo.params
    params[ARCH].update(epochs=LONG_EPOCHS, patience=LONG_EPOCHS)
    repo.params = params


def start_repro(repo, log, **kwargs):
    """`dvc repro` in the background, stdout and stderr into `log` (a file: no pipe to fill up)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(DVC), "repro"], cwd=repo.root, env=script_env(), stdout=out, stderr=subprocess.STDOUT, **kwargs
        )


def wait_for(condition, what, process=None, timeout=120, log=None):
    """Poll `condition` until true; fail if `process` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        tail = Path(log).read_text()[-3000:] if log else ""
        assert process is None or process.poll() is None, f"the process ended before {what}:\n{tail}"
        assert time.monotonic() < deadline, f"no {what} within {timeout}s:\n{tail}"
        time.sleep(0.05)


def log_says(log, text):
    return lambda: text in Path(log).read_text()


def processes_in(root):
    """Live processes (not this one, not zombies) working in `root`: what a test left running there."""
    found = []
    for process in psutil.process_iter(["cwd", "cmdline", "status"]):
        info = process.info
        if process.pid != os.getpid() and info["cwd"] == str(root) and info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def live_members(group):
    """The processes of a process group that have not ended (a zombie has: only its parent can reap it)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == group and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, PermissionError):
            pass
    return members


def kill_all(processes):
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def start_queue(repo, jobs, log):
    """`dvc queue start -j jobs`, its output into a file: the detached workers inherit its stdout and
    stderr, so with pipes (repo.dvc) the call would only return once they exit, i.e. the queue is done."""
    with open(log, "w") as out:
        result = subprocess.run(
            [str(DVC), "queue", "start", "-j", str(jobs)],
            cwd=repo.root,
            env=script_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
    assert result.returncode == 0, Path(log).read_text()


def stop_queue(repo):
    """Stop the queue's celery workers (`dvc queue stop --kill`), and make sure they are gone.

    Workers are detached daemons that exit about 10 s after the queue empties; each writes
    .dvc/tmp/exps/celery/dvc-exp-worker-N.json with its pid (and returncode once it has ended).
    """
    repo.dvc("queue", "stop", "--kill", check=False, timeout=60)
    workers = []
    for info in (repo.root / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.json"):
        pid = json.loads(info.read_text()).get("pid")
        try:
            workers.append(psutil.Process(pid))
        except (psutil.NoSuchProcess, TypeError):
            pass
    workers = [w for w in workers if "queue-worker" in " ".join(w.cmdline())]
    _, alive = psutil.wait_procs(workers, timeout=30)
    kill_all(alive)


def queue_statuses(repo, names):
    """{experiment name: Queued | Running | Success | Failed} from `dvc queue status`'s table."""
    table = repo.dvc("queue", "status").stdout
    statuses = {}
    for line in table.splitlines():
        words = line.split()
        for name in names:
            if name in words:
                statuses[name] = words[-1]
    return statuses


def queue_logs(repo, names):
    """The end of each queued experiment's console output (`dvc queue logs`), for failure messages."""
    return {name: repo.dvc("queue", "logs", name, check=False).stdout[-4000:] for name in names}


def experiments(shown):
    """{name: data} for every named experiment in `dvc exp show --json`."""
    found = {}
    if isinstance(shown, dict):
        if shown.get("name") and isinstance(shown.get("data"), dict) and "params" in shown["data"]:
            found[shown["name"]] = shown["data"]
        for value in shown.values():
            found.update(experiments(value))
    elif isinstance(shown, list):
        for value in shown:
            found.update(experiments(value))
    return found


def test_pushed_results_pull_into_a_clone_that_is_up_to_date(built, tmp_path):
    repo = copy_repo(built, tmp_path)
    remote = tmp_path / "remote"
    repo.dvc("remote", "add", "-d", "shared", remote)
    repo.dvc("remote", "modify", "shared", "verify", "true")  # as docs/scaling.md sets it up
    repo.commit("shared remote")  # .dvc/config travels with git
    repo.dvc("push")
    assert status_cloud(repo) == {}  # everything the workspace holds is on the remote

    DvcRepo(tmp_path).git("clone", "-q", repo.root, "clone")
    clone = DvcRepo(tmp_path / "clone")
    clone.dvc("config", "--local", "core.site_cache_dir", str(tmp_path / "clone_site_cache"))
    assert not (clone.root / f"data/models/{ARCH}/seed42.pt").exists()
    clone.dvc("pull")

    assert status(clone) == {}
    assert ran(clone.dvc("repro").stdout) == set()
    for path in (f"data/models/{ARCH}/seed42.pt", f"data/resume/{ARCH}/seed42.pt", "data/split/train.npz"):
        assert (clone.root / path).read_bytes() == (repo.root / path).read_bytes(), path

    # a checkpoint swapped on the remote (another file's bytes under its hash): verify makes the pull fail
    lock = yaml.safe_load((repo.root / "dvc.lock").read_text())
    md5 = next(
        out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] == f"data/models/{ARCH}/seed42.pt"
    )
    stored = remote / "files/md5" / md5[:2] / md5[2:]
    stored.chmod(0o644)
    stored.write_bytes((repo.root / f"data/resume/{ARCH}/seed42.pt").read_bytes())
    DvcRepo(tmp_path).git("clone", "-q", repo.root, "second")
    second = DvcRepo(tmp_path / "second")
    second.dvc("config", "--local", "core.site_cache_dir", str(tmp_path / "second_site_cache"))
    assert second.dvc("pull", check=False).returncode != 0
    assert not (second.root / f"data/models/{ARCH}/seed42.pt").exists()


def test_queued_experiments_run_in_parallel(built, tmp_path):
    repo = copy_repo(built, tmp_path)
    hidden = {"narrow-gru": 6, "wide-gru": 10}
    for name, size in hidden.items():
        repo.dvc("exp", "run", "--queue", "-n", name, "-S", f"{ARCH}.hidden_dim={size}")
    try:
        start_queue(repo, 2, tmp_path / "queue_start.log")
        most_running, deadline = 0, time.monotonic() + 300
        while True:
            statuses = queue_statuses(repo, hidden)
            most_running = max(most_running, list(statuses.values()).count("Running"))
            if set(statuses.values()) <= {"Success", "Failed"} and len(statuses) == len(hidden):
                break
            assert time.monotonic() < deadline, f"queue not done after 300 s: {statuses}\n{queue_logs(repo, hidden)}"
            time.sleep(5)  # each `dvc queue status` costs a second or more of CPU
        logs = queue_logs(repo, hidden)
        assert statuses == {name: "Success" for name in hidden}, f"{statuses}\n{logs}"
    finally:
        stop_queue(repo)
    assert most_running == 2, "the two experiments never ran at the same time"
    spare = (repo.root / ".dvc/tmp/resume").resolve()
    for name in hidden:  # each ran in its own temporary workspace, reusing the cached data stages
        assert ran(logs[name]) == {f"train@{ARCH}-42", f"evaluate@{ARCH}-42", "compare"}, logs[name]
        # ...which DVC deletes when it ends: the training kept a spare of its state outside it, then removed it
        assert f"its training state is also kept in {spare}, so a rerun resumes" in logs[name], logs[name]
    assert not list(spare.glob("*.pt"))

    shown = experiments(json.loads(repo.dvc("exp", "show", "--json").stdout))
    parameters = {}
    for name, size in hidden.items():
        assert name in shown, sorted(shown)
        data = shown[name]
        assert data["params"]["params.yaml"]["data"][ARCH]["hidden_dim"] == size
        metrics = {path.replace(os.sep, "/"): value["data"] for path, value in data["metrics"].items()}
        evaluated = metrics[f"metrics/eval/{ARCH}/seed42.json"]  # what this experiment's evaluate stage counted
        confusion = evaluated["confusion"]
        assert (
            evaluated["reviews"] == 120 and confusion["tp"] + confusion["fn"] == 60 == confusion["tn"] + confusion["fp"]
        )
        assert evaluated["accuracy"] == round((confusion["tp"] + confusion["tn"]) / 120, 6)
        parameters[name] = metrics[f"metrics/train/{ARCH}/seed42.json"]["parameters"]
        assert metrics[f"metrics/eval/{ARCH}/seed42.json"]["parameters"] == parameters[name]
    assert parameters["narrow-gru"] < parameters["wide-gru"]
    assert status(repo) == {}  # the workspace itself was never touched


def test_second_repro_in_the_same_workspace_fails_on_the_lock(built, tmp_path):
    repo = copy_repo(built, tmp_path)
    train_longer(repo)
    log = tmp_path / "first.log"
    first = start_repro(repo, log)
    try:
        wait_for(log_says(log, f"{ARCH} epoch 1:"), "training", first, log=log)
        second = repo.dvc("repro", check=False)
        assert first.poll() is None, "the first repro ended before the second one could collide with it"
        assert second.returncode != 0, second.stdout
        error = [line for line in second.stderr.splitlines() if line.startswith("ERROR")]
        assert error and LOCK_ERROR.search(error[0]), second.stderr
        assert ran(second.stdout) == set()
        assert first.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert ran(log.read_text()) == {f"train@{ARCH}-42", f"evaluate@{ARCH}-42", "compare"}
    assert status(repo) == {}


def work_stages(repo):
    """dvc.lock's entries of every stage but check_params (which reruns, and is recorded, on any params change)."""
    stages = yaml.safe_load((repo.root / "dvc.lock").read_text())["stages"]
    return {name: entry for name, entry in stages.items() if name != "check_params"}


def test_killed_repro_records_nothing_and_the_next_repro_resumes(built, tmp_path):
    repo = copy_repo(built, tmp_path)
    train_longer(repo)
    lock_before = work_stages(repo)
    log = tmp_path / "killed.log"
    killed = start_repro(repo, log, start_new_session=True)
    try:
        # "epoch 2" is printed after epoch 1's training state was saved to data/resume/gru.pt
        wait_for(log_says(log, f"{ARCH} epoch 2:"), "a second epoch", killed, log=log)
        os.killpg(killed.pid, signal.SIGKILL)  # dvc, torchrun's agent: the whole process group
        killed.wait(timeout=30)
        wait_for(lambda: not live_members(killed.pid), "end of the killed process group", timeout=30)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(timeout=30)
        # torchrun starts each worker in a session of its own; it must die with torchrun's agent
        # (distributed.die_with_launcher): give the kernel a moment, then collect what is left
        deadline = time.monotonic() + 30
        while processes_in(repo.root) and time.monotonic() < deadline:
            time.sleep(0.1)
        strays = processes_in(repo.root)
        kill_all(strays)
    assert not strays, [" ".join(p.info["cmdline"] or []) for p in strays]

    assert work_stages(repo) == lock_before  # nothing recorded as done (but check_params, which finished first)
    changed = status(repo)
    assert f"train@{ARCH}-42" in changed, changed
    assert not (repo.root / f"data/models/{ARCH}/seed42.pt").exists()  # DVC removed the old one; none written
    assert (repo.root / f"data/resume/{ARCH}/seed42.pt").exists()  # persist: true keeps the state

    # nothing to clean up: DVC drops the dead process's rwlock entries itself, with a warning
    again = repo.dvc("repro")
    assert "had been killed. Auto removed it from the lock file" in again.stdout + again.stderr
    resumed = re.search(rf"{ARCH}: resuming after epoch (\d+)", again.stdout)
    assert resumed and 1 <= int(resumed.group(1)) < LONG_EPOCHS, again.stdout
    assert ran(again.stdout) == {f"train@{ARCH}-42", f"evaluate@{ARCH}-42", "compare"}
    assert json.loads((repo.root / f"metrics/train/{ARCH}/seed42.json").read_text())["epochs_run"] == LONG_EPOCHS
    assert status(repo) == {}


def test_an_interrupted_temporary_experiment_resumes_when_run_again(built, tmp_path):
    """`dvc exp run --temp` trains in a copy that DVC deletes when the run ends, interrupted or not; the rerun
    takes up the state the train stage also kept in <project>/.dvc/tmp/resume."""
    repo = copy_repo(built, tmp_path)
    command = [
        str(DVC),
        "exp",
        "run",
        "--temp",
        "-S",
        f"{ARCH}.epochs={LONG_EPOCHS}",
        "-S",
        f"++{ARCH}.patience={LONG_EPOCHS}",
    ]
    log = tmp_path / "interrupted.log"
    with open(log, "w") as out:
        first = subprocess.Popen(
            command, cwd=repo.root, env=script_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(log_says(log, f"{ARCH} epoch 2:"), "a second epoch", first, log=log)
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C
        assert first.wait(timeout=120) != 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    assert "error: interrupted" in log.read_text(), log.read_text()[-3000:]
    spare = (repo.root / ".dvc/tmp/resume").resolve()
    assert f"its training state is also kept in {spare}" in log.read_text()

    again = repo.run(*command)
    resumed = re.search(rf"{ARCH}: resuming after epoch (\d+) from {re.escape(str(spare))}", again.stdout)
    assert resumed and 1 <= int(resumed.group(1)) < LONG_EPOCHS, again.stdout
    assert not list(spare.glob("*.pt"))  # the finished run removed its spare state
    assert status(repo) == {}  # a temporary experiment leaves the workspace as it was


def test_temp_and_queued_experiments_read_the_relative_source(built, tmp_path):
    """DVC runs these in a copy of the repository under .dvc/tmp/exps/: a source relative to the project
    (../aclImdb_v1.tar.gz, like the README's ../shared/...) must still be found there."""
    repo = copy_repo(built, tmp_path)
    source = repo.params["ingest"]["source"]
    assert not Path(source).is_absolute() and (repo.root / source).is_file()
    # a new download_dir reruns ingest (and nothing after it: its table comes out the same)
    temp = repo.dvc("exp", "run", "--temp", "-n", "temp-run", "-S", "ingest.download_dir=data/raw_temp")
    assert ran(temp.stdout) == {"ingest"}, temp.stdout
    repo.dvc("exp", "run", "--queue", "-n", "queued-run", "-S", "ingest.download_dir=data/raw_queued")
    try:
        start_queue(repo, 1, tmp_path / "queue_start.log")
        deadline = time.monotonic() + 180
        while (statuses := queue_statuses(repo, ["queued-run"])).get("queued-run") not in ("Success", "Failed"):
            assert time.monotonic() < deadline, f"queue not done after 180 s: {statuses}"
            time.sleep(3)
        logs = queue_logs(repo, ["queued-run"])["queued-run"]
        assert statuses == {"queued-run": "Success"}, logs
        assert ran(logs) == {"ingest"}, logs
    finally:
        stop_queue(repo)
    shown = experiments(json.loads(repo.dvc("exp", "show", "--json").stdout))
    for name in ("temp-run", "queued-run"):
        ingest = shown[name]["metrics"]["metrics/ingest.json"]["data"]
        assert ingest["source"] == source and ingest["reviews"] == 2 * 2 * TINY_PER_LABEL + TINY_UNSUP


def test_a_registered_model_is_fetched_by_name(built, tmp_path):
    """README: a version tag in DVC's registry format, then `dvc artifacts get . best` (dvc.yaml's artifacts): the
    best model by validation, which compare copies."""
    repo = copy_repo(built, tmp_path)
    repo.git("tag", "-a", "best@v1.0.0", "-m", "Registering artifact best version 1.0.0")
    repo.dvc("artifacts", "get", ".", "best", "-o", tmp_path / "fetched.pt")
    assert (tmp_path / "fetched.pt").read_bytes() == (repo.root / f"data/models/{ARCH}/seed42.pt").read_bytes()
