"""Running a task in a child process, killed for sure when its kill_time passes.

A thread blocked in C code cannot be interrupted; a process can be killed. With ``isolation="process"``
the task's thread starts ``python -m app.child``, sends it the function and arguments on stdin, streams
what it prints and logs into the run's log (live, as for threads), relays its progress reports, and
reads its result from a file. At kill_time, or when the run is cancelled or the runner stops, the
child's whole process group is terminated (SIGTERM, then SIGKILL after a short grace).

The child never outlives this process: it holds a pipe whose write end only this process has, and sets
Linux's parent-death signal (app/lifeline.py); the run's temp folder names this process and records the
child, so that recovery on this host can kill what a dead runner left and remove it (app/orphans.py).
"""

import contextlib
import json
import os
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connection

from . import capture, conf, orphans, registry
from .context import TaskContext, accepts_context
from .lifecycle import Outcome
from .status import RunStatus

PROGRESS_MARK = "\x1econductor-progress "
TERMINATE_GRACE = 2.0
#: What names the database the parent uses, test database included; the child's settings give the rest.
DATABASE_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")


def execute_in_process(task: Any, context: TaskContext, on_chunk: Any) -> Outcome:
    _refuse_an_in_memory_database()
    thread = threading.current_thread()
    started = time.time()
    log = capture.RunLog(conf.get().LOG_LIMIT, on_chunk)
    context.log = log
    # Removed here however the run ends; by the child if this process dies; else by recovery.
    with tempfile.TemporaryDirectory(prefix=orphans.folder_prefix(), ignore_cleanup_errors=True) as folder:
        result_path = Path(folder) / "result.json"
        child, lifeline = _start_child(task, context, result_path)
        try:  # an interrupt may land anywhere from here, even while the relay thread starts
            with child.stdout, lifeline:  # closed however the wait ends, interrupts included
                reader = threading.Thread(target=_relay, args=(child.stdout, log, context), daemon=True)
                reader.start()
                status, error = _supervise(child, task, context)
                reader.join(timeout=5)
        except BaseException:
            _kill(child)  # the thread itself is being interrupted: never leave the child behind
            raise
        log.flush_live()
        output = None
        if status is None:
            status, output, error = _result(result_path, child.returncode)
    return Outcome(status=status, started=started, finished=time.time(), output=output, error=error,
                   log=log.getvalue(), thread_name=thread.name, thread_ident=thread.ident,
                   progress=context.progress, progress_message=context.progress_message)  # fmt: skip


def _refuse_an_in_memory_database() -> None:
    """A child process would open an empty database of its own and fail with "no such table"."""
    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        raise RuntimeError(
            "isolation='process' cannot reach an in-memory SQLite database (Django's test database for "
            "SQLite unless named): set DATABASES['default']['TEST'] = {'NAME': 'test.sqlite3'}."
        )


def _start_child(task: Any, context: TaskContext, result_path: Path) -> tuple[subprocess.Popen, IO[bytes]]:
    """The child, and the write end of its lifeline: the child ends itself once that is closed.

    An interrupt can land at any bytecode here (a stopping runner's): whatever exists by then is killed
    or closed, and a child started before its Popen object was returned sees its lifeline close.
    """
    lifeline_in, lifeline_out = os.pipe()
    arguments = [str(result_path), str(os.getpid()), str(lifeline_in)]  # see app/child.py
    command = [sys.executable, "-m", f"{__package__}.child", *arguments]
    child = lifeline = None
    try:
        child = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=os.getcwd(),  # relative paths in the project's settings mean what they mean here
            env=child_environment(task.func),
            start_new_session=True,  # its own process group: killing it kills what it started too
            pass_fds=(lifeline_in,),  # only to this child: other children must not hold the pipe open
        )
        lifeline = os.fdopen(lifeline_out, "wb")
        orphans.record_child(result_path.parent, child.pid)
        child.stdin.write(json.dumps(_spec(task, context)))
        child.stdin.close()
    except BaseException:
        if child is not None:
            _kill(child)
        if lifeline is not None:
            lifeline.close()
        else:
            os.close(lifeline_out)
        raise
    finally:
        os.close(lifeline_in)
    return child, lifeline


def _spec(task: Any, context: TaskContext) -> dict[str, Any]:
    """What the child needs to run the function and to give it a context like a thread's."""
    return {
        "func": task.func,
        "args_in": task.args_in or {},
        "task": task.pk,
        "task_id": task.task_id,
        "name": task.name,
        "run": context.run_id,
        "fence": context.fence,
        "db_use": context.db_use,
        "database": database_settings(connection.settings_dict),
    }


def database_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The parent's database as it resolved it (a test database's name included), for the child to use
    whatever its settings would compute from the environment."""
    return {key: os.fspath(config[key]) if isinstance(config.get(key), os.PathLike) else config.get(key)
            for key in DATABASE_KEYS}  # fmt: skip


def child_environment(func_path: str) -> dict[str, str]:
    """The parent's settings module, import path and task modules (its database travels in the spec).

    The function's own module is among the task modules: the parent found it registered, so it may run.
    """
    modules = [*conf.get().TASK_MODULES, func_path.rpartition(".")[0]]
    return {
        **os.environ,
        # (None under override_settings, which keeps the module it overrides in the environment)
        "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE or os.environ.get("DJANGO_SETTINGS_MODULE", ""),
        "PYTHONPATH": os.pathsep.join(import_path()),
        "CONDUCTOR_TASK_MODULES": ",".join(dict.fromkeys(modules)),
        "PYTHONUNBUFFERED": "1",
    }


def import_path() -> list[str]:
    """The parent's sys.path entries that a fresh interpreter would not have: the project's directory
    (manage.py's, which Python put first, or a server's working directory) and what the project added."""
    found, defaults = [], _interpreter_paths()
    for entry in sys.path:  # the runner's own PYTHONPATH included: Python put it there
        path = Path(entry or os.getcwd()).resolve()  # "" is the working directory
        if path.is_dir() and not any(path.is_relative_to(default) for default in defaults):
            found.append(str(path))
    return list(dict.fromkeys(found))


def _interpreter_paths() -> set[Path]:
    """Where the standard library and site-packages are: every interpreter started so has them."""
    paths = sysconfig.get_paths()
    names = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    names += [*site.getsitepackages(), site.getusersitepackages()]
    return {Path(name).resolve() for name in names}


def _relay(stream: IO[str], log: capture.RunLog, context: TaskContext) -> None:
    """The child's output into the run's log; its progress lines into the context."""
    for line in stream:
        if line.startswith(PROGRESS_MARK):
            report = json.loads(line[len(PROGRESS_MARK) :])
            context.report_progress(report["fraction"], report["message"])
        else:
            log.write(line)


def _supervise(child: subprocess.Popen, task: Any, context: TaskContext) -> tuple[str | None, str]:
    """Wait for the child; kill it at kill_time or on cancel. None: it ended by itself.

    A stopping runner only asks (SIGTERM, which a function that takes ``context`` sees as
    stop_requested); the child then has the runner's whole grace period, as a thread has, and is
    killed when the runner interrupts this thread after it.
    """
    deadline = time.monotonic() + task.kill_time if task.kill_time else None
    asked = False
    while True:
        try:
            child.wait(timeout=0.05)
            return None, ""
        except subprocess.TimeoutExpired:
            pass
        if context.cancelled:
            _end(child)
            return RunStatus.CANCELLED, "The child process was stopped on request: the run was cancelled.\n"
        if context.stop_requested and not asked:
            asked = True
            if _takes_context(task):
                _signal(child, signal.SIGTERM)
        if deadline is not None and time.monotonic() >= deadline:
            _kill(child)
            return RunStatus.TIMED_OUT, (
                f"TimeLimitExceeded: the child process was killed at kill_time={task.kill_time} s\n"
            )


def _takes_context(task: Any) -> bool:
    try:
        return accepts_context(registry.get(task.func))
    except registry.UnknownFunction:
        return False


def _end(child: subprocess.Popen) -> None:
    _signal(child, signal.SIGTERM)
    try:
        child.wait(timeout=TERMINATE_GRACE)
    except subprocess.TimeoutExpired:
        _kill(child)


def _kill(child: subprocess.Popen) -> None:
    _signal(child, signal.SIGKILL)
    child.wait()


def _signal(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


def _result(path: Path, returncode: int) -> tuple[str, Any, str]:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return RunStatus.FAILED, None, f"The child process {_how_it_ended(returncode)} without a result.\n"
    return result["status"], result.get("output"), result.get("error", "")


def _how_it_ended(returncode: int) -> str:
    """E.g. "exited with status 3" (``os._exit(3)``) or "was killed by signal SIGKILL (9)"."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "an unknown signal"
    return f"was killed by signal {name} ({-returncode})"
