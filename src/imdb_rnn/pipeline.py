"""The pipeline's plumbing, shared by every stage: its error (PipelineError), atomic file writes, readers that
turn a missing or damaged input into one line, the stage runner (stage_main, run_main) and the process's cores.

A stage that is killed must never leave a file that looks finished, so every output is written
to a temporary file beside its target and renamed into place only once it is complete.
"""

import errno
import json
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path


class PipelineError(Exception):
    """A problem the user can fix; printed as one line, never as a traceback."""


def usable_cores():
    """How many cores this process may run on: its CPU affinity where the platform has one (a stage that
    tools/parallel_repro.py pinned to one core, a container's cpuset), else every core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


PROJECT_FILES = ("params.yaml", "dvc.yaml", ".dvc", ".git")


def check_output_folder(path, flag):
    """Raise PipelineError when the output folder `path` is a project's own: the current folder, or one that
    holds params.yaml, dvc.yaml, .dvc or .git. A folder output may be emptied (dvclive deletes params.yaml,
    dvc.yaml and plots/ from the folder it logs to when a run starts), so it must be a folder of its own."""
    folder = Path(path)
    held = [name for name in PROJECT_FILES if (folder / name).exists()]
    if held or folder.resolve() == Path.cwd().resolve():
        raise PipelineError(
            f"{flag} {path} is a project folder ({'it holds ' + ', '.join(held) if held else 'the current one'}), "
            "whose files it could delete: give a folder of its own, as dvc.yaml does (metrics/live/ARCH/seedN)"
        )


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(
    path,
    what,
    loader,
    make="run the stage that makes it (dvc repro)",
    errors=(Exception,),
    remake="rerun the stage that makes it",
):
    """`loader(path)`, or a one-line PipelineError: `what` is missing (fix: `make`), or corrupt or
    truncated (fix: `remake`).

    The one place that turns a missing or damaged input into a message; every reader of a stage
    input goes through it. `errors` are the exceptions that mean "damaged" (any, by default: a
    truncated zip or pickle fails in many ways).
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{what} {path} is missing: {make}")
    try:
        return loader(path)
    except PipelineError:
        raise
    except errors as err:  # the exception's type says enough; some libraries' messages run to paragraphs
        raise PipelineError(f"{what} {path} is corrupt or truncated ({type(err).__name__}): {remake}")


def _discard_stdout():
    """Point file descriptor 1 at /dev/null, so that the interpreter's last flush of what is still
    buffered cannot fail again ("Exception ignored ... BrokenPipeError") after the line was said."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing will flush it
        pass


@contextmanager
def standard_output():
    """Yield sys.stdout for a command's results, flushed at the end. A reader that went away (`| head`)
    ends the command quietly with exit 141, as coreutils' tools end (128 + SIGPIPE); a failed write (a
    full disk, /dev/full) is one PipelineError line, never a traceback."""
    try:
        yield sys.stdout
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        raise SystemExit(141)
    except OSError as err:
        _discard_stdout()
        raise PipelineError(f"cannot write the results to standard output: {err.strerror or err}") from None


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path, what="file"):
    return load(path, what, lambda p: json.loads(p.read_text()), errors=(json.JSONDecodeError, UnicodeDecodeError))


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path, **arrays):
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path, what="array file"):
    import numpy as np

    def read(p):
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    return load(path, what, read, make="run the stages before it (dvc repro)")


def resource_error(err):
    """The one line for running out of memory or disk space, or None for any other exception: these are the
    machine's limits, not bugs, and their tracebacks (34 lines for a full disk) say nothing more."""
    if (
        isinstance(err, MemoryError)
        or isinstance(err, RuntimeError)
        and any(sign in str(err) for sign in ("DefaultCPUAllocator", "can't allocate memory", "CUDA out of memory"))
    ):
        # the allocator's message runs to 170 characters and buries the one figure that matters
        size = re.search(r"tried to allocate (\d+) bytes", str(err))
        summary = (
            f"DefaultCPUAllocator could not allocate {int(size[1]) / 2**30:.2f} GiB"
            if size
            else (next(iter(str(err).splitlines()), "") or type(err).__name__)[:160]
        )
        return (
            f"out of memory ({summary}): lower the batch size (batch_size, train.eval_batch_size, "
            "evaluate.batch_size, imdb-predict --batch-size) or the model's size, or free memory"
        )
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        where = f" {err.filename}" if err.filename else ""
        return f"cannot write{where}: {err.strerror}: free disk space (or raise the file-size limit) and run again"
    return None


def _interrupt(signum, frame):
    # one stop is enough: a second one (Ctrl-C reaches a stage and its supervisor, which passes it on, or an
    # impatient user) must not interrupt the handling of the first with a traceback
    _ignore_stops()
    raise KeyboardInterrupt


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
SUPERVISED = "IMDB_RNN_SUPERVISED"  # set in a supervised stage's child (or by a test that runs a stage in-process)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent():
    """Have the kernel SIGKILL this process when its parent dies (Linux; elsewhere nothing), so that no stage
    trains on, and writes outputs, for a parent that is gone."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def supervise(memory_settings):
    """Run this stage script again as a child process, wait for it and exit with its status; in that child
    (or under torch's elastic launcher, which watches its workers itself) return at once.

    The kernel's out-of-memory killer ends the process that holds the most memory with SIGKILL, which no
    process can catch, and DVC then says only "exited with -9". That process is the child; this one, which
    has imported nothing heavy, names the probable cause and the settings to lower (`memory_settings`, e.g.
    "evaluate.batch_size") in one line and exits 137, as a shell reports SIGKILL. Stop signals sent to this
    process are passed on, and the child dies with it (PR_SET_PDEATHSIG).
    """
    if os.environ.get(SUPERVISED) or in_worker():
        return
    import subprocess

    child = subprocess.Popen(
        [sys.executable, *sys.orig_argv[1:]], env={**os.environ, SUPERVISED: "1"}, preexec_fn=die_with_parent
    )
    for signum in STOP_SIGNALS:
        # as run_main does: SIGINT even where a shell started this as a background job (SIGINT ignored), but
        # under nohup SIGHUP stays ignored, here and in the child
        if signum != getattr(signal, "SIGHUP", None) or signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, lambda signum, frame: child.send_signal(signum))
    code = child.wait()
    if code == -signal.SIGKILL:
        print(
            "error: killed by SIGKILL, most likely by the kernel for want of memory: "
            f"lower {memory_settings}, or free memory, and run again",
            file=sys.stderr,
        )
    sys.exit(128 - code if code < 0 else code)  # a signal's death as a shell reports it (-9: 137)


# What a collective raises in a rank whose peer has gone: gloo's socket errors (RuntimeError) and
# torch.distributed's DistNetworkError. Not DistBackendError: NCCL raises it for its own faults too.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
PEER_STOPPED = "another training process stopped first"


def in_worker():
    """True in a process started by torch's elastic launcher (torchrun, or distributed.launch)."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def _peer_gone(err):
    return (
        any(cls.__name__ == "DistNetworkError" for cls in type(err).__mro__)
        or isinstance(err, RuntimeError)
        and any(sign in str(err) for sign in _PEER_GONE)
    )


def _ignore_stops():
    """A worker that is ending ignores the launcher's SIGTERM (and SIGINT): a KeyboardInterrupt raised
    while it writes its line would skip the line and os._exit."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _fail(line, code):
    """Print `line` and exit with `code`; a data-parallel worker hands the line to its launcher instead.

    torch's elastic launcher gives each worker an error file (TORCHELASTIC_ERROR_FILE); the launcher
    (distributed.launch) prints the first failing worker's line, so N workers still print one line.
    A worker then ends at once (os._exit), without Python's or the process group's teardown: a peer
    may be inside a collective that will never finish, and leaving the process group waits for it,
    or, with gloo's threads still holding the work at exit, aborts ("terminate called without an
    active exception").
    """
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file and in_worker():  # run_main's handler already ignores the launcher's stop here
        try:
            write_text(error_file, json.dumps({"message": line, "timestamp": int(time.time())}))
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # a closed pipe (| head) or stream must not keep the worker from ending
                    pass
            os._exit(code)
    print(line, file=sys.stderr)
    sys.exit(code)


def _seed(text):
    """--seed's type: an integer >= 0, or one error line (argparse would print its usage too)."""
    if not text.isdigit():
        raise PipelineError(
            f"seed {text!r} is not an integer >= 0: params.yaml's seeds must be a list of them, e.g. seeds: [42, 7, 11]"
        )
    return int(text)


def stage_main(description, run, paths, optional=(), arch=False, seed=False):
    """A stage script's whole main(): every path a required flag (dvc.yaml names them all), --params
    (params.yaml by default), --arch when `arch`, --seed when `seed`; then one call,
    run([arch,] [seed,] params_path, files), with files {path flag (dashes as underscores): path},
    under run_main's one-line errors."""
    import argparse

    def main():
        parser = argparse.ArgumentParser(description=description)
        if arch:
            parser.add_argument("--arch", required=True, help="an architecture that params.yaml lists")
        if seed:
            parser.add_argument(
                "--seed", required=True, type=_seed, help="the training seed (one of params.yaml's seeds)"
            )
        parser.add_argument("--params", default="params.yaml", help="the parameters file (default params.yaml)")
        for name in paths:
            parser.add_argument(f"--{name}", required=True, metavar="PATH")
        for name in optional:
            parser.add_argument(f"--{name}", metavar="PATH")
        args = parser.parse_args()
        files = {key: getattr(args, key) for key in (name.replace("-", "_") for name in (*paths, *optional))}
        leading = ([args.arch] if arch else []) + ([args.seed] if seed else [])
        return run(*leading, args.params, files)

    return run_main(main)


def run_main(main):
    """Run a stage or command `main`: a PipelineError is one line on stderr and exit 1; an interrupt
    (Ctrl-C, SIGTERM, SIGHUP) is `error: interrupted` and exit 130. Never a traceback for either.

    In a data-parallel worker any other exception ends the worker too (_fail): a collective that
    failed because another rank has gone is PEER_STOPPED, anything else its traceback and a line."""
    signal.signal(signal.SIGTERM, _interrupt)
    # a closed terminal or a dropped SSH connection: stop as for SIGTERM, not at once; under nohup (SIGHUP
    # ignored when the process started) run on, as nohup asks
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _interrupt)
    # a shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt
    signal.signal(signal.SIGINT, _interrupt)
    try:
        return main()
    except BaseException as err:
        if in_worker():
            _ignore_stops()
        if isinstance(err, PipelineError):
            _fail(f"error: {err}", 1)
        if isinstance(err, KeyboardInterrupt):
            _fail("error: interrupted", 130)
        if line := resource_error(err):
            _fail(f"error: {line}", 1)
        if not in_worker() or not isinstance(err, Exception):
            raise
        # a data-parallel worker: its launcher prints one line for every worker
        if _peer_gone(err):  # a consequence; the rank that stopped first says why
            _fail(f"error: {PEER_STOPPED}", 1)
        traceback.print_exc()  # a bug: its traceback, then the launcher's line
        summary = next(iter(str(err).splitlines()), "")
        _fail(
            f"error: training process {os.environ.get('RANK', '?')} failed with {type(err).__name__}"
            + (f": {summary}" if summary else ""),
            1,
        )
