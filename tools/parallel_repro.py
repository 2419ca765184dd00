"""`dvc repro` with independent stages side by side: what `make pipeline` runs.

DVC runs one stage at a time. Its documented way to run more is parallel stage execution: several
`dvc repro` processes in one workspace, each on its own stage; DVC's repository lock is only held
while a process reads or writes dvc.lock, and `--wait-for-lock` makes the others wait for it. This
script plans that: it reads the stage graph from dvc.yaml, and starts `dvc repro --single-item
STAGE` for each stage once every stage it depends on has finished, `--jobs` at a time, the longest
first (by the seconds the last run took, of the stage and of the
chain of stages that waits for it).

Why: on a 2-core CPU a second thread speeds one recurrent training up little (a chain of small
matrix products), while two trainings of one thread each keep both cores busy
(benchmarks/bench_lanes.py: 1.26x the tokens/s for bilstm, 1.65x for gru). So each stage runs
on its lane's share of the cores (pinned with the CPU affinity that imdb_rnn.runtime.configure_cpu
reads), always the same share, so a run's numbers do not depend on which stages happened to
overlap. metrics/timing/*.json say how many threads each training had. Against `dvc repro` (every
core for each stage) a model differs by float rounding: some of PyTorch's CPU kernels split their
sums by thread count (tests/test_parallel_repro.py).

    python tools/parallel_repro.py                        # every stage of dvc.yaml
    python tools/parallel_repro.py --jobs 1               # one at a time, as dvc repro
    python tools/parallel_repro.py -S ingest.source=../shared/data/aclImdb_v1.tar.gz
    python tools/parallel_repro.py train                  # these targets and what they depend on

-S applies an override to params.yaml as `dvc exp run -S` does (DVC's parser; params.yaml only),
before anything runs, and it stays there as it would after `dvc exp run`; `dvc exp save` then keeps
the result as an experiment. Each stage's output goes to
build/parallel_repro/STAGE.log; on the first failure no new stage starts, the running ones finish
(as `make -j` does), and the failed stage's last lines are printed. Every run writes how long each
stage took, on how many cores, to metrics/parallel_repro.json (a run in which no stage ran, or an
interrupted one, writes nothing): the next run's order, and where the pipeline's time goes.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from imdb_rnn.pipeline import PipelineError, run_main, write_json

RECORD = Path("metrics/parallel_repro.json")
LOGS = Path("build/parallel_repro")
PINNING = hasattr(os, "sched_setaffinity")  # Linux; elsewhere each stage would take every core


def stage_graph(targets=()):
    """({stage name: set of the names of the stages it depends on}, {stage name: its metrics files}),
    for `targets` (DVC's target syntax: a stage, a foreach/matrix group, dvc.yaml by default) and
    everything upstream of them. Raises PipelineError for a target dvc.yaml does not have."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        try:
            # dvc.yaml by default, as dvc repro
            wanted = {
                stage
                for target in targets or ["dvc.yaml"]
                for stage in repo.stage.collect(target, with_deps=True, graph=graph)
            }
        except DvcException as error:
            raise PipelineError(f"{error}: name a stage of dvc.yaml (dvc stage list)") from None
        # dvc.yaml's order, which the scheduler keeps among stages it has no times for
        stages = [stage for stage in repo.index.stages if stage in wanted]
        return (
            {stage.addressing: {dep.addressing for dep in graph.successors(stage)} for stage in stages},
            {stage.addressing: [str(out) for out in stage.outs if out.metric] for stage in stages},
        )


def read_record(record_path=RECORD):
    """{stage name: {"seconds", "cores"}} of the record's readable entries; {} where there is no record
    or this script cannot read it."""
    try:
        entries = json.loads(Path(record_path).read_text())["stages"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    stages = {}
    for name, entry in entries:
        try:
            stages[name] = {"seconds": float(entry["seconds"]), "cores": entry.get("cores")}
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
    return stages


def recorded_seconds(metrics, record_path=RECORD):
    """{stage name: seconds} from the last runs' record, else the `train_seconds` of a stage's own
    metrics/timing/ file (what a training measured, under dvc repro too); stages with neither are left out."""
    seconds = {name: entry["seconds"] for name, entry in read_record(record_path).items()}
    for stage, paths in metrics.items():
        for path in paths:
            if stage not in seconds and Path(path).parent.parts[:2] == ("metrics", "timing"):
                try:
                    seconds[stage] = float(json.loads(Path(path).read_text())["train_seconds"])
                except (OSError, ValueError, KeyError, TypeError):
                    pass
    return seconds


def with_group_means(seconds, stages):
    """`seconds` with a guess for every stage never timed: the mean of its group's timed stages (train@...,
    evaluate@...), so that a new architecture's training is planned like the others' instead of as if
    it took no time (last, after every evaluation, with one lane idle at the end)."""
    groups = {}
    for name, value in seconds.items():
        groups.setdefault(name.split("@")[0], []).append(value)
    guesses = {
        name: sum(groups[name.split("@")[0]]) / len(groups[name.split("@")[0]])
        for name in stages
        if name not in seconds and name.split("@")[0] in groups
    }
    return {**guesses, **seconds}


def share_cores(cores, jobs):
    """`cores` (CPU ids) cut into `jobs` equal lanes (the remainder to the first ones); at least one core a lane."""
    cores = sorted(cores)
    jobs = max(1, min(jobs, len(cores)))
    size, extra = divmod(len(cores), jobs)
    lanes, start = [], 0
    for lane in range(jobs):
        end = start + size + (lane < extra)
        lanes.append(cores[start:end])
        start = end
    return lanes


def auto_jobs(cores):
    """Two lanes where a second core exists and stages can be pinned to their share, else one."""
    return 2 if PINNING and len(cores) >= 2 else 1


class Scheduler:
    """Starts `start(stage, cores)` for every stage of `graph` once its dependencies have finished, at most
    `jobs` at a time, first the one with the longest chain of `estimate` seconds from its start to the
    end of the pipeline (Topcuoglu et al. 2002, HEFT's upward rank; unknown stages count as 0 and keep
    dvc.yaml's order). Each stage runs on one lane of the cores, even when it runs alone, so that the
    threads a stage gets, and with them its float rounding, do not depend on timing (where the
    cores do not divide evenly, the first lanes have one more and a stage's lane still does).
    `start(stage, cores)` returns a Popen-like object (poll(), returncode)."""

    def __init__(self, graph, jobs, cores, estimate, start, poll_seconds=0.5):
        unknown = {dep for deps in graph.values() for dep in deps} - set(graph)
        if unknown:
            raise PipelineError(f"stages depend on stages outside the plan: {', '.join(sorted(unknown))}")
        self.graph, self.start, self.poll_seconds = graph, start, poll_seconds
        self.lanes = share_cores(cores, jobs)
        self.order = {name: i for i, name in enumerate(graph)}
        # a stage's priority: its own seconds plus the longest chain of seconds that waits for it (HEFT's upward rank)
        dependents = {name: [other for other, deps in graph.items() if name in deps] for name in graph}
        self.rank = {}

        def rank(name):
            if name not in self.rank:
                self.rank[name] = estimate.get(name, 0.0) + max((rank(d) for d in dependents[name]), default=0.0)
            return self.rank[name]

        for name in graph:
            rank(name)
        self.running = {}

    def run(self, progress=None, log=print):
        """Run every stage; return {stage: (returncode, seconds, cores)} of the stages started. Stops
        starting stages after the first failure and waits for the running ones."""
        waiting, done, failed, results = set(self.graph), set(), [], {}
        self.running = running = {}
        free = list(range(len(self.lanes)))
        while waiting or running:
            ready = sorted((s for s in waiting if self.graph[s] <= done), key=lambda s: (-self.rank[s], self.order[s]))
            while ready and free and not failed:
                stage = ready.pop(0)
                lane = free.pop(0)
                cores = self.lanes[lane]
                waiting.discard(stage)
                running[stage] = (self.start(stage, cores), time.monotonic(), lane, cores)
                log(f"start {stage} on {len(cores)} core{'s' * (len(cores) > 1)}")
            if not running:  # all done, or nothing more may start (after a failure)
                break
            time.sleep(self.poll_seconds)
            for stage, (process, started, lane, cores) in list(running.items()):
                if process.poll() is None:
                    continue
                seconds = time.monotonic() - started
                del running[stage]
                free.append(lane)
                free.sort()
                results[stage] = (process.returncode, seconds, len(cores))
                if process.returncode == 0:
                    done.add(stage)
                    log(f"done  {stage} in {seconds:.0f} s")
                else:
                    failed.append(stage)
                    log(f"FAILED {stage} (exit {process.returncode}) after {seconds:.0f} s")
                if progress is not None:
                    progress.update()
        return results

    def interrupt(self, grace_seconds=60):
        """Stop the running stages: SIGINT to each one's process group (DVC and the stage's command:
        a stage ends with `error: interrupted` and DVC records nothing), SIGKILL to what is left after
        `grace_seconds`."""
        for process, *_ in self.running.values():
            signal_group(process, signal.SIGINT)
        deadline = time.monotonic() + grace_seconds
        for process, *_ in self.running.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except (subprocess.TimeoutExpired, KeyboardInterrupt):  # too slow, or a second Ctrl-C: no more waiting
                for other, *_ in self.running.values():
                    signal_group(other, signal.SIGKILL)
                process.wait()


def signal_group(process, signum):
    """Send `signum` to the process group `process` leads, unless the group is already gone."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def dvc_start(repo_root, logs):
    """start(stage, cores) for Scheduler: `dvc --wait-for-lock repro --single-item STAGE`, its output to
    logs/STAGE.log, pinned to `cores` (where the platform can) with OMP_NUM_THREADS to match, so that
    torch and OpenMP take that many threads. Each runs under a supervisor (supervise) in a session of
    its own, so that an interrupt reaches the stages through Scheduler.interrupt alone, whether it came
    from a terminal or not, and a scheduler that dies without one (SIGKILL) leaves no stage running."""
    logs.mkdir(parents=True, exist_ok=True)

    def start(stage, cores):
        env = {**os.environ, "OMP_NUM_THREADS": str(len(cores))}
        command = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", "--single-item", stage]
        pinned = ",".join(map(str, cores)) if PINNING else ""
        with open(logs / f"{stage}.log", "w") as out:
            return subprocess.Popen(
                [sys.executable, __file__, "--supervise", str(os.getpid()), pinned, *command],
                cwd=repo_root,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    return start


def supervise(parent, cores, command, poll_seconds=0.5, grace_seconds=60):
    """Run `command` (one stage's dvc repro) pinned to `cores` in this process group; return its exit status.
    When `parent`, the scheduler, is gone (this process has another parent), the group gets SIGINT, as
    from Scheduler.interrupt (the stage ends with `error: interrupted` and DVC records nothing), then
    SIGKILL after `grace_seconds`: a stage never trains on for a pipeline nobody runs any more (a killed
    scheduler, a lost terminal), holding DVC's lock so that the next `make pipeline` finds it busy."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is for the stage; this waits for it to end
    if cores and PINNING:
        os.sched_setaffinity(
            0, [int(c) for c in cores.split(",")]
        )  # before DVC starts, which passes it on to the stage
    if os.getppid() != parent:
        return 130
    # DVC must take an interrupt as from a terminal, though this supervisor ignores it
    child = subprocess.Popen(command, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while os.getppid() == parent:
        try:
            code = child.wait(poll_seconds)
            return 128 - code if code < 0 else code  # a signal's death as a shell reports it (-9: 137)
        except subprocess.TimeoutExpired:
            pass
    os.killpg(0, signal.SIGINT)
    try:
        child.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(0, signal.SIGKILL)  # this supervisor too
    return 130


def ran(log_path):
    """Whether DVC ran the stage's command (False: it found the stage unchanged, or took it from the run cache)."""
    try:
        return "Running stage" in Path(log_path).read_text(errors="replace")
    except OSError:
        return False


def write_record(results, jobs, wall_seconds, logs, record_path=RECORD):
    """Merge this run's stage times into the record (a stage DVC skipped keeps its earlier time); a run
    in which no stage ran leaves the record as it was."""
    ran_now = {
        stage: (seconds, cores)
        for stage, (code, seconds, cores) in results.items()
        if code == 0 and ran(logs / f"{stage}.log")
    }
    if not ran_now:
        return
    stages = read_record(record_path)
    for stage, (seconds, cores) in ran_now.items():
        stages[stage] = {"seconds": round(seconds, 1), "cores": cores}
    record = {
        "last_run": {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "jobs": jobs,
            "wall_seconds": round(wall_seconds, 1),
            "cpu_count": os.cpu_count(),
            "stages_ran": sorted(ran_now),
        },
        "stages": dict(sorted(stages.items(), key=lambda item: -item[1]["seconds"])),
    }
    write_json(record_path, record)


def failure_line(failed, not_run, logs):
    """The error line for stages that failed (and those that then did not run), from their logs in `logs`."""
    # DVC says only "exited with -9": SIGKILL, which on a busy machine is the kernel's out-of-memory killer
    killed = [
        stage
        for stage in failed
        if re.search(r"exited with (-9|137)\b", (logs / f"{stage}.log").read_text(errors="replace"))
    ]
    return (
        f"stage{'s' * (len(failed) > 1)} {', '.join(failed)} failed"
        + (f"; {len(not_run)} stage{'s' * (len(not_run) > 1)} did not run" if not_run else "")
        + (
            f"; {', '.join(killed)} ended with -9 (SIGKILL), most likely killed by the kernel for want of memory: "
            "lower its batch_size, hidden_dim or train.eval_batch_size, or run fewer stages at once (make pipeline "
            "JOBS=1)"
            if killed
            else ""
        )
        + ": fix the error above and run again (finished stages are not rerun)"
    )


def apply_params_overrides(overrides, params="params.yaml"):
    """`dvc exp run -S`'s overrides (key=value, ++key=value, ~key), written into params.yaml with DVC's own parser."""
    from dvc.utils.hydra import apply_overrides

    try:
        apply_overrides(params, list(overrides))
    except Exception as error:  # hydra's and DVC's errors alike: a bad override is the user's input
        raise PipelineError(f"bad -S override {' '.join(overrides)}: {error}") from None


def parallel_repro(targets=(), jobs=0, overrides=(), repo_root=".", logs=LOGS, record_path=RECORD):
    """Run the pipeline as described above; return the wall seconds. Raises PipelineError naming the
    stages that failed or could not run (their logs hold DVC's and the stage's own messages)."""
    if jobs < 0:
        raise PipelineError(f"--jobs must be 0 (auto) or more, got {jobs}")
    if overrides:
        apply_params_overrides(overrides)
    graph, metrics = stage_graph(targets)
    cores = sorted(os.sched_getaffinity(0)) if PINNING else list(range(os.cpu_count() or 1))
    jobs = jobs or auto_jobs(cores)
    estimate = with_group_means(recorded_seconds(metrics, record_path), graph)
    scheduler = Scheduler(graph, jobs, cores, estimate, dvc_start(repo_root, Path(logs)))
    print(f"{len(graph)} stages, {len(scheduler.lanes)} at a time on {len(cores)} cores; logs in {logs}/", flush=True)
    began = time.monotonic()
    with tqdm(total=len(graph), unit="stage", dynamic_ncols=True) as progress:
        try:
            results = scheduler.run(progress, log=lambda line: progress.write(f"{datetime.now():%H:%M:%S} {line}"))
        except BaseException:  # an interrupt, or any error here: no stage may outlive this script
            scheduler.interrupt()
            raise
    wall = time.monotonic() - began
    write_record(results, len(scheduler.lanes), wall, Path(logs), record_path)
    failed = sorted(s for s, (code, _, _) in results.items() if code)
    if failed:
        for stage in failed:
            tail = (Path(logs) / f"{stage}.log").read_text(errors="replace").strip().splitlines()[-15:]
            print(f"--- {stage} ({Path(logs) / f'{stage}.log'}):\n" + "\n".join(tail), file=sys.stderr)
        raise PipelineError(failure_line(failed, sorted(set(graph) - set(results)), Path(logs)))
    print(f"{len(graph)} stages up to date in {wall / 60:.1f} min ({record_path} has each stage's time)")
    return wall


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--supervise"]:  # one stage under the scheduler (dvc_start), never typed by hand
        parent, cores, *command = argv[1:]
        sys.exit(supervise(int(parent), cores, command))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="stages or stage groups (default: every stage of dvc.yaml)")
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=0,
        help="stages at a time (0 = auto: 2 where the CPU has 2 or more cores and stages can be pinned)",
    )
    parser.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml override, as dvc exp run -S (repeatable)",
    )
    args = parser.parse_args(argv)
    parallel_repro(args.targets, args.jobs, args.overrides)


if __name__ == "__main__":
    run_main(main)
