"""tools/parallel_repro.py: `make pipeline`'s stages side by side, in dependency order, with dvc repro's
outputs up to float rounding."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, as_a_background_job, ran_stages, script_env

from imdb_rnn.pipeline import PipelineError

sys.path.insert(0, str(REPO_ROOT / "tools"))
import parallel_repro  # noqa: E402
from parallel_repro import Scheduler, share_cores, with_group_means  # noqa: E402

TOOL = REPO_ROOT / "tools/parallel_repro.py"


class FakeProcess:
    """A stage that finishes after `ticks` polls with `code`."""

    def __init__(self, ticks, code):
        self.ticks, self.returncode, self.code = ticks, None, code

    def poll(self):
        self.ticks -= 1
        if self.ticks <= 0:
            self.returncode = self.code
        return self.returncode


def schedule(graph, jobs=2, cores=(0, 1), estimate=None, ticks=None, codes=None):
    """Run a Scheduler on fake stages; return (start log [(stage, cores, running then)], results)."""
    starts, running = [], set()

    def start(stage, given):
        process = FakeProcess((ticks or {}).get(stage, 1), (codes or {}).get(stage, 0))
        starts.append((stage, tuple(given), frozenset(running)))
        running.add(stage)
        original = process.poll

        def poll():
            code = original()
            if code is not None:
                running.discard(stage)
            return code

        process.poll = poll
        return process

    results = Scheduler(graph, jobs, list(cores), estimate or {}, start, poll_seconds=0).run(log=lambda line: None)
    return starts, results


DIAMOND = {
    "ingest": set(),
    "split": {"ingest"},
    "train@a": {"split"},
    "train@b": {"split"},
    "train@c": {"split"},
    "compare": {"train@a", "train@b", "train@c"},
}


def test_stages_start_after_their_dependencies_at_most_jobs_at_a_time_longest_first():
    starts, results = schedule(
        DIAMOND,
        estimate={"train@b": 100, "train@c": 50, "train@a": 10},
        ticks={"train@b": 5, "train@c": 2, "train@a": 1},
    )
    order = [stage for stage, _, _ in starts]
    assert order == ["ingest", "split", "train@b", "train@c", "train@a", "compare"]  # longest first
    finished_before = {}
    for stage, _, running in starts:
        assert len(running) < 2  # never a third at once
        finished_before[stage] = running
    for stage, deps in DIAMOND.items():  # nothing a stage depends on is still running when it starts
        assert not deps & finished_before[stage]
    assert all(code == 0 for code, _, _ in results.values()) and set(results) == set(DIAMOND)


def test_a_stage_never_timed_is_planned_as_its_groups_mean_so_a_new_training_starts_early():
    graph = {"split": set(), "train@a": {"split"}, "train@b": {"split"}, "train@new": {"split"}}
    graph.update({f"evaluate@{x}": {f"train@{x}"} for x in ("a", "b", "new")})
    recorded = {"split": 3, "train@a": 600, "train@b": 400, "evaluate@a": 30, "evaluate@b": 30}
    estimate = with_group_means(recorded, graph)
    assert estimate["train@new"] == 500 and estimate["evaluate@new"] == 30 and estimate["train@a"] == 600
    assert with_group_means({}, graph) == {}  # nothing timed: nothing guessed
    starts, _ = schedule(graph, estimate=estimate)
    order = [stage for stage, _, _ in starts]
    assert order.index("train@new") < order.index("evaluate@a")  # not left for last, after the evaluations
    starts, _ = schedule(graph, estimate=recorded)  # what it did before: the new training after every other stage
    assert [stage for stage, _, _ in starts].index("train@new") > [stage for stage, _, _ in starts].index("evaluate@a")


def test_every_stage_gets_one_lane_of_cores_even_alone_so_its_threads_do_not_depend_on_timing():
    starts, _ = schedule(DIAMOND, jobs=2, cores=(0, 1, 2, 3), ticks={"train@a": 3, "train@b": 5, "train@c": 3})
    cores = {stage: given for stage, given, _ in starts}
    assert cores["ingest"] == cores["split"] == cores["compare"] == (0, 1)  # alone, and still one lane
    assert {cores["train@a"], cores["train@b"]} == {(0, 1), (2, 3)}  # two lanes of two cores, apart
    assert cores["train@c"] == cores["train@a"]  # the lane train@a left, beside train@b


def test_a_failure_starts_nothing_new_but_lets_running_stages_finish():
    starts, results = schedule(
        DIAMOND,
        estimate={"train@a": 3, "train@b": 2, "train@c": 1},
        ticks={"train@a": 1, "train@b": 4},
        codes={"train@a": 2},
    )
    started = [stage for stage, _, _ in starts]
    assert started == ["ingest", "split", "train@a", "train@b"]  # train@c and compare never start
    assert results["train@a"][0] == 2 and results["train@b"][0] == 0  # train@b was running: it finished


def test_a_short_stage_that_a_long_one_waits_for_goes_first():
    """The upward rank: `a` alone is short, but `c` (the longest) can only start after it."""
    starts, _ = schedule({"a": set(), "b": set(), "c": {"a"}}, jobs=1, estimate={"a": 1, "b": 5, "c": 10})
    assert [stage for stage, _, _ in starts] == ["a", "c", "b"]


def test_share_cores_and_a_plan_that_names_an_unknown_stage():
    assert share_cores([3, 1, 2, 0], 2) == [[0, 1], [2, 3]]
    assert share_cores([0, 1, 2], 2) == [[0, 1], [2]]
    assert share_cores([0], 2) == [[0]]  # never an empty lane
    with pytest.raises(PipelineError, match="outside the plan: nowhere"):
        Scheduler({"a": {"nowhere"}}, 2, [0, 1], {}, None)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_make_pipelines_parallel_repro_runs_every_stage_once_and_matches_dvc_repro(dvc_repo):
    archs, seeds = ["rnn", "gru"], [42]
    params = dvc_repo.train_only(archs, {"gru_w2v": "word2vec"}, seeds, epochs=1)
    params["train"]["threads"] = 0  # each stage takes the cores it was given
    params["vocab"]["min_freq"] = 1
    dvc_repo.params = params
    dvc_repo.commit("pipeline")
    root = dvc_repo.root

    result = subprocess.run(
        [sys.executable, str(TOOL), "--jobs", "2"],
        cwd=root,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        dvc_repo.dvc("status").stdout.strip().endswith("Data and pipelines are up to date.")
    )  # DVC recorded every stage
    logs = root / "build/parallel_repro"
    ran = set().union(*(ran_stages(log.read_text()) for log in logs.glob("*.log")))
    assert {"ingest", "split", "train@rnn-42", "train@gru-42", "train_word2vec@gru_w2v-42", "compare"} <= ran
    board = json.loads((root / "metrics/leaderboard.json").read_text())
    assert {row["arch"]: row["pretrained"] for row in board["rows"]} == {
        "rnn": "none",
        "gru": "none",
        "gru_w2v": "word2vec",
        "baseline": "n-grams",
    }
    record = json.loads((root / "metrics/parallel_repro.json").read_text())
    assert set(record["last_run"]["stages_ran"]) == set(record["stages"]) >= ran
    lanes = {len(lane) for lane in share_cores(os.sched_getaffinity(0), 2)}  # the cores of each lane here
    threads = {
        arch: json.loads((root / f"metrics/timing/{arch}/seed42.json").read_text())["threads"]
        for arch in ["rnn", "gru", "gru_w2v"]
    }
    assert set(threads.values()) <= lanes, threads  # threads: 0 means the lane's cores, alone or not
    assert {entry["cores"] for entry in record["stages"].values()} <= lanes

    # nothing changed: a second run starts every stage, DVC skips each one
    again = subprocess.run(
        [sys.executable, str(TOOL)], cwd=root, env=script_env(), capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert not set().union(*(ran_stages(log.read_text()) for log in logs.glob("*.log")))
    assert json.loads((root / "metrics/parallel_repro.json").read_text()) == record  # a run of nothing keeps the record

    # dvc repro, one stage at a time with every core, trains the same model up to float rounding
    model = root / "data/models/gru/seed42.pt"
    parallel = torch.load(model, weights_only=True)["state_dict"]
    dvc_repo.dvc("repro", "--force", "--single-item", "train@gru-42")
    serial = torch.load(model, weights_only=True)["state_dict"]
    assert all(torch.allclose(parallel[key], serial[key], rtol=0, atol=1e-5) for key in serial)


def test_a_failing_stage_is_named_and_exits_non_zero(dvc_repo):
    params = dvc_repo.train_only(["rnn"], seeds=[42], epochs=1)
    dvc_repo.params = params
    dvc_repo.commit("pipeline")
    (dvc_repo.root / "stages/split.py").write_text("raise SystemExit('error: broken on purpose')\n")
    result = subprocess.run(
        [sys.executable, str(TOOL)], cwd=dvc_repo.root, env=script_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage split failed;") and "did not run" in last, result.stderr
    assert "broken on purpose" in result.stderr  # the stage's own message, from its log
    assert not (dvc_repo.root / "data/models/rnn/seed42.pt").exists()


def test_a_stage_killed_by_sigkill_is_named_as_a_probable_out_of_memory_kill(tmp_path):
    """DVC's own line for a stage the kernel's out-of-memory killer ended is only "exited with -9"."""
    (tmp_path / "train@gru-42.log").write_text(
        "Running stage 'train@gru-42':\n> python stages/train.py ...\nERROR: failed "
        "to reproduce 'train@gru-42': failed to run: python stages/train.py ..., exited with -9\n"
    )
    (tmp_path / "split.log").write_text("error: broken on purpose\nERROR: ... exited with 1\n")
    line = parallel_repro.failure_line(["split", "train@gru-42"], ["compare"], tmp_path)
    assert line.startswith(
        "stages split, train@gru-42 failed; 1 stage did not run; train@gru-42 ended with -9 (SIGKILL), most "
        "likely killed by the kernel for want of memory: lower its batch_size"
    )
    assert "split ended" not in line and parallel_repro.failure_line(["split"], [], tmp_path) == (
        "stage split failed: fix the error above and run again (finished stages are not rerun)"
    )


def test_bad_arguments_are_one_line_errors(dvc_repo):
    for args, message in (
        (["--jobs", "-1"], "--jobs must be 0 (auto) or more"),
        (["no_such_stage"], "no_such_stage"),
        (["-S", "train.threads"], "bad -S override"),
    ):
        result = subprocess.run(
            [sys.executable, str(TOOL), *args],
            cwd=dvc_repo.root,
            env=script_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def processes_in(folder):
    """The pids of the processes whose working directory is `folder` (DVC and the stages it runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd") == str(folder):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def test_a_stopped_scheduler_leaves_no_stage_running_and_the_next_run_works(dvc_repo):
    """SIGHUP (a closed terminal, a dropped SSH connection) stops every running stage as SIGTERM and Ctrl-C do,
    and so does SIGKILL, which the scheduler cannot answer: each stage's supervisor sees it gone. DVC records
    no interrupted stage, and its lock is free for the next run."""
    # stopped long before the end, however slow the machine
    params = dvc_repo.train_only(["rnn", "gru"], seeds=[42], epochs=1000, patience=1000)
    dvc_repo.params = params
    dvc_repo.commit("pipeline")
    root = dvc_repo.root
    logs = root / "build/parallel_repro"
    for signum in (signal.SIGHUP, signal.SIGKILL):  # the second run finds the data stages done: a training starts soon
        shutil.rmtree(logs, ignore_errors=True)  # only this run's logs
        tool = subprocess.Popen(
            [sys.executable, str(TOOL)],
            cwd=root,
            env=script_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=as_a_background_job,
        )
        try:
            deadline = time.monotonic() + 300
            while not any("epoch 1:" in log.read_text() for log in logs.glob("train@*.log")):  # a training is under way
                assert tool.poll() is None, (
                    f"the scheduler ended ({tool.returncode}) before a training started: {tool.stderr.read()}"
                )
                assert time.monotonic() < deadline, "no training started in 300 s"
                time.sleep(0.2)
            tool.send_signal(signum)  # only the scheduler is signalled, not its stages' sessions
            _, stderr = tool.communicate(timeout=120)
        finally:
            if tool.poll() is None:
                tool.kill()
        if signum == signal.SIGKILL:
            assert tool.returncode == -signal.SIGKILL
        else:
            assert tool.returncode == 130 and stderr.strip().splitlines()[-1] == "error: interrupted", stderr
        deadline = (
            time.monotonic() + 90
        )  # a supervisor notices a killed scheduler within a second, then interrupts its stage
        while processes_in(root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_in(root), f"a stage outlived the scheduler's {signum.name}"
        for log in logs.glob("train@*.log"):
            assert "epoch 1:" not in log.read_text() or "error: interrupted" in log.read_text(), log.read_text()
        status = dvc_repo.dvc("status").stdout
        assert "train@rnn-42" in status and "train@gru-42" in status  # neither was recorded as done
    # SIGKILL left trainings holding DVC's lock, so that the next run was "busy": now it gets the lock
    again = subprocess.run(
        [sys.executable, str(TOOL), "-S", "rnn.epochs=1", "train@rnn-42"],
        cwd=root,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert (root / "data/models/rnn/seed42.pt").exists()
