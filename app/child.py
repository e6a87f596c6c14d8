"""``python -m app.child RESULT_PATH PARENT_PID LIFELINE_FD``: run one task function in this fresh process.

See isolation.py. Reads {"func", "args_in", ...} from stdin; what the function prints and logs goes to
stdout, which the parent records; the result is written to RESULT_PATH as JSON. SIGTERM asks the task to
stop (its context's stop_requested), as cancel does in a thread. The child dies with its parent
(app/lifeline.py): the parent-death signal is set before Django is imported, and a child that finds its
parent gone never starts the function.
"""

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .lifeline import Lifeline  # standard library only: nothing slow is imported before it holds on


class ChildContext:
    """A TaskContext stand-in whose progress reports travel to the parent on stdout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from .context import TaskContext

        task = SimpleNamespace(pk=spec["task"], task_id=spec["task_id"], name=spec["name"],
                               db_use=spec.get("db_use", False))  # fmt: skip
        self._context = TaskContext(task, run_id=spec.get("run"), fence=spec.get("fence"))
        signal.signal(signal.SIGTERM, lambda signum, frame: self._context.request_stop())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def report_progress(self, fraction: float, message: str = "") -> None:
        from .isolation import PROGRESS_MARK

        self._context.progress = fraction  # validated by the parent's context when relayed
        print(PROGRESS_MARK + json.dumps({"fraction": fraction, "message": str(message)}), flush=True)


def main(result_path: str, parent_pid: str, lifeline_fd: str) -> int:
    # First of all, before Django (half a second) is imported: the runner may die meanwhile.
    lifeline = Lifeline.hold(int(parent_pid), int(lifeline_fd), Path(result_path).parent)
    lifeline.watch()
    spec = json.loads(sys.stdin.read())
    _use_parents_database(spec["database"])
    import django

    django.setup()
    result = _run(spec, lifeline)
    sys.stdout.flush()
    if lifeline.parent_alive():
        Path(result_path).write_text(json.dumps(result))
    else:
        lifeline.remove_folder()  # no one is left to read it: this process outlived the other
    return 0


def _use_parents_database(database: dict[str, Any]) -> None:
    """The database the parent uses, before anything connects: the settings module alone could name
    another (the parent's may be a test database, or come from an environment this child lacks)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise SystemExit("isolation='process' needs DJANGO_SETTINGS_MODULE: settings.configure() cannot be "
                         "repeated in a child process.")  # fmt: skip
    from django.conf import settings

    settings.DATABASES["default"] = {**settings.DATABASES.get("default", {}), **database}


def _run(spec: dict[str, Any], lifeline: Lifeline) -> dict[str, Any]:
    from . import registry
    from .context import CONTEXT_PARAMETER, accepts_context
    from .execution import call, jsonable
    from .interrupts import Interrupts

    try:
        func = registry.get(spec["func"])
        kwargs = dict(spec["args_in"])
        if accepts_context(func):
            kwargs[CONTEXT_PARAMETER] = ChildContext(spec)
        if not lifeline.parent_alive():  # the runner died while this child started: recovery reruns it
            lifeline.abandon()
        return {"status": "finished", "output": jsonable(call(func, kwargs, Interrupts()))}
    except BaseException:  # SystemExit and KeyboardInterrupt too: the parent stops a child by signals
        traceback.print_exc(file=sys.stdout)
        return {"status": "failed", "error": traceback.format_exc()}


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
