"""Training through failures and across processes: SIGKILL then resume, and torchrun with two gloo ranks."""

import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import yaml
from conftest import REPO_ROOT, STAGES, as_a_background_job, dvc_args, run_script, script_env, tiny_params, write_params
from synthetic import make_archive

from imdb_rnn.distributed import Context
from imdb_rnn.pipeline import SUPERVISED
from imdb_rnn.train import Resume

ARCH = "gru"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Data stages on an archive big enough that one training epoch takes a noticeable time."""
    root = tmp_path_factory.mktemp("resume_data")
    archive = make_archive(root / "aclImdb_v1.tar.gz", per_label=250, unsup=10, seed=3)
    params = tiny_params(archive, seq_len=64, hidden=16)
    params["vocab"]["min_freq"] = 1
    # a warm-up, then a decaying rate: a resumed run must take up the schedulers' state too
    params[ARCH].update(
        epochs=4,
        patience=4,
        lr=0.01,
        batch_size=8,
        dropout=0.2,
        embed_dropout=0.2,
        lr_schedule="linear",
        warmup_steps=10,
    )
    write_params(root / "params.yaml", params)
    for stage in ("ingest", "clean", "vocab", "tokenize_pad", "split"):
        result = run_script(stage, cwd=root)
        assert result.returncode == 0, result.stderr
    return root


def train_args(tag):
    """dvc.yaml's arguments of the train stage, its outputs moved into out/<tag>/."""
    return dvc_args("train", ["--arch", ARCH]) + [
        "--arch",
        ARCH,
        "--out",
        f"out/{tag}/model.pt",
        "--metrics",
        f"out/{tag}/metrics.json",
        "--timing",
        f"out/{tag}/timing.json",
        "--live",
        f"out/{tag}/live",
        "--resume",
        f"out/{tag}/resume.pt",
    ]


def live_rows(root, tag):
    return {p.name: p.read_text() for p in sorted((root / "out" / tag / "live").rglob("*.tsv"))}


def without_timestamps(tsv):
    return [line.split("\t")[:2] for line in tsv.splitlines()]


def kill_when_saved(args, cwd, saved):
    """Start the train stage with `args` in `cwd`; SIGKILL its process group once `saved()` is true."""
    process = subprocess.Popen(
        [sys.executable, str(STAGES / "train.py"), *args],
        cwd=cwd,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not saved() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "training ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_training_resumes_and_ends_as_if_never_interrupted(data):
    whole = run_script("train", *train_args("whole"), cwd=data)
    assert whole.returncode == 0, whole.stderr
    expected = json.loads((data / "out/whole/metrics.json").read_text())

    # SIGKILL the whole process group as soon as the first epoch's state is on disk, i.e. in epoch 2
    kill_when_saved(train_args("killed"), data, lambda: (data / "out/killed/resume.pt").exists())
    assert not (data / "out/killed/model.pt").exists()  # nothing that looks finished
    assert not (data / "out/killed/metrics.json").exists()

    again = run_script("train", *train_args("killed"), cwd=data)
    assert again.returncode == 0, again.stderr
    resumed = re.search(r"resuming after epoch (\d+)", again.stdout)
    assert resumed and 1 <= int(resumed.group(1)) < 4, again.stdout
    assert f"{ARCH} epoch 1:" not in again.stdout  # the finished epochs were not trained again
    assert json.loads((data / "out/killed/metrics.json").read_text()) == expected
    whole_live, killed_live = live_rows(data, "whole"), live_rows(data, "killed")
    assert whole_live.keys() == killed_live.keys() and whole_live
    for name in whole_live:
        assert without_timestamps(killed_live[name]) == without_timestamps(whole_live[name])


def test_a_temporary_experiment_killed_mid_training_resumes_in_its_next_copy(data, tmp_path):
    """DVC runs `dvc exp run --temp` in <project>/.dvc/tmp/exps/standalone/<name>/ (a queued experiment in
    .dvc/tmp/exps/<name>/) and deletes that copy when the run ends, interrupted or not: the state kept under
    .dvc/tmp/resume lets the rerun, in a copy of its own, resume there and end as a run never interrupted.
    tests/test_scaling.py does the same through `dvc exp run --temp` itself."""
    whole = run_script("train", *train_args("whole_temp"), cwd=data)
    assert whole.returncode == 0, whole.stderr
    expected = json.loads((data / "out/whole_temp/metrics.json").read_text())

    project = tmp_path / "project"
    spare = project / ".dvc/tmp/resume"

    def experiment_copy(name):
        copy = project / ".dvc/tmp/exps/standalone" / name
        shutil.copytree(data, copy, ignore=shutil.ignore_patterns("out"))
        return copy

    first = experiment_copy("tmp_first")
    kill_when_saved(train_args("run"), first, lambda: bool(list(spare.glob("*.pt"))))
    shutil.rmtree(first)  # what DVC does with an ended experiment's copy

    again = run_script("train", *train_args("run"), cwd=experiment_copy("tmp_second"))
    assert again.returncode == 0, again.stderr
    assert f"its training state is also kept in {spare.resolve()}" in again.stdout
    resumed = re.search(r"resuming after epoch (\d+) from (\S+)", again.stdout)
    assert resumed and 1 <= int(resumed.group(1)) < 4 and resumed.group(2).startswith(str(spare.resolve())), (
        again.stdout
    )
    assert json.loads((project / ".dvc/tmp/exps/standalone/tmp_second/out/run/metrics.json").read_text()) == expected
    assert not list(spare.glob("*.pt"))  # a finished run leaves no spare state behind
    # in the project's own workspace nothing is kept outside data/resume
    assert "also kept in" not in whole.stdout


def test_a_spare_state_is_kept_only_inside_a_dvc_experiment_copy(tmp_path):
    from imdb_rnn.train import spare_folder

    spare = (tmp_path / "project/.dvc/tmp/resume").resolve()
    assert spare_folder(tmp_path / "project/.dvc/tmp/exps/tmpab12") == spare  # a queued experiment's copy
    assert spare_folder(tmp_path / "project/.dvc/tmp/exps/standalone/tmpab12") == spare  # dvc exp run --temp's
    assert spare_folder(tmp_path / "project") is None
    assert spare_folder(tmp_path / "project/.dvc/tmp/exps/standalone/tmpab12/sub/dir") is None
    assert spare_folder(tmp_path / "exps") is None and spare_folder(tmp_path / "tmp/exps/x") is None
    state = {"torch_rng": [torch.get_rng_state()], "history": [], "finished": False}
    Resume(tmp_path / "a/state.pt", "f" * 64, tmp_path / "spare").save(Context(), state)
    assert Resume(tmp_path / "b/state.pt", "f" * 64, tmp_path / "spare").load(Context())["history"] == []
    assert Resume(tmp_path / "b/state.pt", "e" * 64, tmp_path / "spare").load(Context()) is None  # another run
    Resume(tmp_path / "a/state.pt", "f" * 64, tmp_path / "spare").save(Context(), {**state, "finished": True})
    assert not list((tmp_path / "spare").iterdir())


def test_finished_or_foreign_state_is_not_resumed(data):
    first = run_script("train", *train_args("twice"), cwd=data)
    assert first.returncode == 0, first.stderr
    # the state of a finished run trains from scratch, not from its end
    second = run_script("train", *train_args("twice"), cwd=data)
    assert second.returncode == 0 and "resuming" not in second.stdout
    assert f"{ARCH} epoch 1:" in second.stdout


@pytest.mark.parametrize("mixed, launcher", [(False, "stage"), (True, "torchrun")])
def test_two_gloo_processes_learn_and_end_with_identical_weights(data, mixed, launcher):
    # the mixed objective runs up to five forward/backward passes per step (adversarial, virtual
    # adversarial on the labelled and the unlabelled batch, entropy): DDP must reduce every one alike
    params = yaml.safe_load((data / "params.yaml").read_text())
    extra = []
    if mixed:
        params[ARCH].update(adversarial_eps=0.05, vat_eps=0.05, entropy_weight=0.5, unsup_ratio=1)
        extra = ["--unlabelled", "data/tokens/unsup.npz"]
    tag = f"ddp{mixed}"
    if launcher == "stage":  # as dvc.yaml runs it: train.processes=2 makes the stage start two workers
        params["train"]["processes"] = 2
        command = [sys.executable, str(STAGES / "train.py")]
    else:  # by hand under torchrun, as the README allows
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(STAGES / "train.py"),
        ]
    write_params(data / f"{tag}.yaml", params)
    command += [*train_args(tag), "--params", f"{tag}.yaml", *extra]
    result = subprocess.run(command, cwd=data, env=script_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # 16 hex digits: unbuffered, the two ranks' prints can interleave before the newline
    digests = dict(re.findall(r"rank (\d) of 2 ends with weights digest ([0-9a-f]{16})", result.stdout))
    assert set(digests) == {"0", "1"}, result.stdout
    assert digests["0"] == digests["1"]
    metrics = json.loads((data / f"out/{tag}/metrics.json").read_text())
    timing = json.loads((data / f"out/{tag}/timing.json").read_text())
    assert timing["processes"] == 2
    assert metrics["val_accuracy"] > 0.9  # the marker words are learnt across the two processes
    # rank 0 alone printed the epoch lines
    assert result.stdout.count(f"{ARCH} epoch 1:") == 1


def start_training(data, tag, processes):
    params = yaml.safe_load((data / "params.yaml").read_text())
    params["train"]["processes"] = processes
    params[ARCH].update(epochs=1000, patience=1000)  # stopped long before the end, however slow the machine
    write_params(data / f"{tag}.yaml", params)
    return subprocess.Popen(
        [sys.executable, str(STAGES / "train.py"), *train_args(tag), "--params", f"{tag}.yaml"],
        cwd=data,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_a_background_job,
    )


@pytest.mark.parametrize(
    "processes, signum",
    [(1, signal.SIGINT), (1, signal.SIGTERM), (1, signal.SIGHUP), (2, signal.SIGINT), (2, signal.SIGTERM)],
)
def test_an_interrupted_training_says_so_in_one_line(data, processes, signum):
    tag = f"interrupted{processes}{signum.name}"
    process = start_training(data, tag, processes)
    deadline = time.monotonic() + 120
    while not (data / f"out/{tag}/resume.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be interrupted"
    process.send_signal(signum)  # Ctrl-C reaches the stage's process; workers run in sessions of their own
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.splitlines() == ["error: interrupted"], err
    assert not (data / f"out/{tag}/model.pt").exists()


@pytest.mark.parametrize("killed", ["worker", "supervisor"])
def test_a_sigkilled_training_is_named_as_out_of_memory_and_leaves_no_process(data, killed):
    """The kernel's out-of-memory killer SIGKILLs the process that grew (the stage's child, which does the
    work): the stage names the probable cause in one line. A SIGKILL to the stage's own process takes its
    child with it."""
    tag = f"sigkill-{killed}"
    process = start_training(data, tag, 1)
    deadline = time.monotonic() + 120
    while not (data / f"out/{tag}/resume.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be killed"
    (worker,) = psutil.Process(process.pid).children()
    assert worker.environ().get(SUPERVISED) == "1"
    (worker if killed == "worker" else psutil.Process(process.pid)).send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert not (data / f"out/{tag}/model.pt").exists()
    if killed == "worker":
        assert process.returncode == 137, err
        assert err.splitlines() == [
            "error: killed by SIGKILL, most likely by the kernel for want of memory: lower the architecture's "
            "batch_size or hidden_dim, or train.eval_batch_size, or free memory, and run again"
        ], err
    else:
        assert process.returncode == -signal.SIGKILL
        worker.wait(timeout=10)  # raises psutil.TimeoutExpired while the child trains on


def test_a_parameter_error_with_two_processes_is_one_line_before_any_worker(data):
    params = yaml.safe_load((data / "params.yaml").read_text())
    params["train"]["processes"] = 2
    params[ARCH]["lr"] = "fast"
    write_params(data / "bad.yaml", params)
    result = run_script("train", *train_args("bad"), "--params", "bad.yaml", cwd=data)
    assert result.returncode == 1 and result.stderr.splitlines() == [
        f"error: parameter {ARCH}.lr must be float, got 'fast'"
    ]
    assert "rank" not in result.stdout  # no worker was started


WORKER = """
import os, time
from imdb_rnn.pipeline import PipelineError, run_main

def main():
    if os.environ["RANK"] == "1":
        raise PipelineError("loss became nan on rank 1")
    time.sleep(60)  # rank 0 is stopped by the launcher once rank 1 has failed

run_main(main)
"""
LAUNCH = """
import sys
from imdb_rnn import distributed
from imdb_rnn.pipeline import run_main
run_main(lambda: distributed.launch(2, sys.argv[1], []))
"""


def test_a_worker_error_is_the_launchers_one_line(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    (tmp_path / "launch.py").write_text(LAUNCH)
    result = subprocess.run(
        [sys.executable, "launch.py", "worker.py"],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: loss became nan on rank 1"], result.stderr


PENDING = """
import os, time
import torch, torch.distributed as dist
from imdb_rnn import distributed
from imdb_rnn.pipeline import PipelineError, run_main

def main():
    context = distributed.setup("cpu")
    if context.rank == 0:
        time.sleep(120)  # busy elsewhere: it never joins rank 1's all-reduce
    dist.all_reduce(torch.ones(4), async_op=True)
    raise PipelineError("loss became nan on rank 1")

run_main(main)
"""


def test_a_worker_that_fails_with_a_collective_in_flight_ends_at_once(tmp_path):
    # leaving the process group would wait for rank 0, and rank 0 for it: the launcher must hear of
    # the failure now, stop rank 0, and print the one line
    (tmp_path / "worker.py").write_text(PENDING)
    (tmp_path / "launch.py").write_text(LAUNCH)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "launch.py", "worker.py"],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["error: loss became nan on rank 1"], result.stderr
    assert time.monotonic() - start < 90  # not after rank 0's two minutes


BLOCKED = """
import os, time
import torch, torch.distributed as dist
from imdb_rnn import distributed
from imdb_rnn.pipeline import PipelineError, run_main

def main():
    context = distributed.setup("cpu")
    if context.rank == 0:
        dist.all_reduce(torch.ones(4))  # waits in gloo for rank 1, which never joins
    time.sleep(2)
    {failure}

run_main(main)
"""


@pytest.mark.parametrize(
    "failure, expected",
    [
        ('raise PipelineError("loss became nan on rank 1")', "error: loss became nan on rank 1"),
        ('raise ValueError("a bug\\nits details")', "error: training process 1 failed with ValueError: a bug"),
        # killed without a word (the OOM killer): rank 0's line is a consequence, rank 1's death the cause
        (
            "os.kill(os.getpid(), 9)",
            "error: training process 1 of 2 died (signal SIGKILL) before it could say why; "
            "rerun with train.processes=1 to see the problem",
        ),
    ],
)
def test_a_failing_worker_is_one_line_while_its_peer_waits_in_a_collective(tmp_path, failure, expected):
    # rank 0's all-reduce fails when rank 1 is gone: that is a consequence, and the line is rank 1's
    (tmp_path / "worker.py").write_text(BLOCKED.format(failure=failure))
    (tmp_path / "launch.py").write_text(LAUNCH)
    result = subprocess.run(
        [sys.executable, "launch.py", "worker.py"],
        cwd=tmp_path,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == expected, result.stderr
    if "ValueError" not in failure:
        assert lines == [expected], result.stderr
    else:  # a bug shows its traceback, from the worker that hit it
        assert lines[0] == "Traceback (most recent call last):" and result.stderr.count("Traceback") == 1, result.stderr
        assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr


# --- which states are taken up ---------------------------------------------------------------


def train_in_process(data, monkeypatch, capsys, *args):
    """stages/train.py in this process (seconds saved on imports): (exit code, stdout)."""
    monkeypatch.chdir(data)
    monkeypatch.setattr(sys, "argv", ["train.py", *map(str, args)])
    monkeypatch.setenv(SUPERVISED, "1")  # in this process, not in a supervised child
    code = 0
    try:
        runpy.run_path(str(STAGES / "train.py"), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_an_unfinished_state_of_other_parameters_or_data_is_not_resumed(data, monkeypatch, capsys):
    params = yaml.safe_load((data / "params.yaml").read_text())
    params[ARCH].update(epochs=2, patience=2)
    write_params(data / "two.yaml", params)
    params[ARCH]["lr"] /= 2
    write_params(data / "other_lr.yaml", params)
    args = [*train_args("foreign"), "--params", "two.yaml"]
    train_in_process(data, monkeypatch, capsys, *args)
    state_path = data / "out/foreign/resume.pt"
    # the state as a run killed during epoch 2 leaves it (weights aside, which do not decide resuming)
    state = torch.load(state_path, weights_only=True)
    state.update(history=state["history"][:1], finished=False)
    torch.save(state, data / "planted.pt")

    def run_on_planted(*more):
        shutil.copy(data / "planted.pt", state_path)
        return train_in_process(data, monkeypatch, capsys, *args, *more)

    # the planted state is resumable: same parameters, same data
    out = run_on_planted()
    assert "resuming after epoch 1 " in out and f"{ARCH} epoch 1:" not in out and f"{ARCH} epoch 2:" in out, out
    # another learning rate, or other training reviews: trained from scratch
    for other in (["--params", "other_lr.yaml"], ["--train", "data/split/val.npz"]):
        out = run_on_planted(*other)
        assert "resuming" not in out and f"{ARCH} epoch 1:" in out, (other, out)


def test_an_unreadable_state_trains_from_scratch(data, monkeypatch, capsys):
    params = yaml.safe_load((data / "params.yaml").read_text())
    params[ARCH].update(epochs=1, patience=1)
    write_params(data / "one.yaml", params)
    train_in_process(data, monkeypatch, capsys, *train_args("clean_start"), "--params", "one.yaml")
    (data / "out/garbled").mkdir(parents=True)
    (data / "out/garbled/resume.pt").write_bytes(b"not a training state")
    out = train_in_process(data, monkeypatch, capsys, *train_args("garbled"), "--params", "one.yaml")
    assert "out/garbled/resume.pt is unreadable: training from scratch" in out and f"{ARCH} epoch 1:" in out, out
    # the same run as one that found no state at all
    assert (data / "out/garbled/metrics.json").read_text() == (data / "out/clean_start/metrics.json").read_text()


def test_a_state_is_resumed_only_by_its_own_fingerprint_and_process_count(tmp_path):
    path = tmp_path / "state.pt"
    Resume(path, "fingerprint A").save(
        Context(), {"torch_rng": [torch.get_rng_state()], "history": [], "finished": False}
    )
    assert Resume(path, "fingerprint A").load(Context())["history"] == []
    assert Resume(path, "fingerprint B").load(Context()) is None  # other parameters, data or initial weights
    # a state saved by one process is not resumed by four (their random states do not fit)
    assert Resume(path, "fingerprint A").load(Context(rank=0, world_size=4)) is None


@pytest.mark.parametrize("edit", ["params", "code"])
def test_settings_or_code_edited_while_training_fail_the_stage_and_nothing_is_written(data, tmp_path, edit):
    """DVC hashes a stage's dependencies after its command ends: without this, dvc.lock would record the
    edited params.yaml or model.py for a model trained with the old ones, and call it up to date."""
    tag = f"edited-{edit}"
    params = yaml.safe_load((data / "params.yaml").read_text())
    params[ARCH].update(epochs=5, patience=5)
    write_params(data / f"{tag}.yaml", params)
    src = shutil.copytree(REPO_ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    process = subprocess.Popen(
        [sys.executable, str(STAGES / "train.py"), *train_args(tag), "--params", f"{tag}.yaml"],
        cwd=data,
        env=script_env({"PYTHONPATH": str(src)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (data / f"out/{tag}/resume.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be edited"
    if edit == "params":
        params[ARCH]["hidden_dim"] = 24
        write_params(data / f"{tag}.yaml", params)
        says = f"params.yaml changed while {ARCH} trained (hidden_dim 16 -> 24)"
    else:
        model = src / "imdb_rnn/model.py"
        model.write_text(model.read_text() + "\n# an edit\n")
        says = f"{model} changed while {ARCH} trained"
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1 and err.splitlines()[-1].startswith(f"error: {says}"), err
    assert "run dvc repro again" in err and not (data / f"out/{tag}/model.pt").exists()
    assert not (data / f"out/{tag}/metrics.json").exists()
