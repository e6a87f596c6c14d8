"""``python -m app.child RESULT_PATH``: run one task function in this fresh process (see isolation.py).

Reads {"func", "args_in", ...} from stdin; what the function prints and logs goes to stdout, which the
parent records; the result is written to RESULT_PATH as JSON. SIGTERM asks the task to stop (its
context's stop_requested), as cancel does in a thread.
"""

import json
import os
import signal
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any


class ChildContext:
    """A TaskContext stand-in whose progress reports travel to the parent on stdout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from .context import TaskContext

        task = SimpleNamespace(pk=spec["task"], task_id=spec["task_id"], name=spec["name"])
        self._context = TaskContext(task, run_id=None)
        signal.signal(signal.SIGTERM, lambda signum, frame: self._context.request_stop())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def report_progress(self, fraction: float, message: str = "") -> None:
        from .isolation import PROGRESS_MARK

        self._context.progress = fraction  # validated by the parent's context when relayed
        print(PROGRESS_MARK + json.dumps({"fraction": fraction, "message": str(message)}), flush=True)


def main(result_path: str) -> int:
    spec = json.loads(sys.stdin.read())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    import django

    django.setup()
    from . import registry
    from .context import CONTEXT_PARAMETER, accepts_context
    from .execution import call, jsonable
    from .interrupts import Interrupts

    try:
        func = registry.get(spec["func"])
        kwargs = dict(spec["args_in"])
        if accepts_context(func):
            kwargs[CONTEXT_PARAMETER] = ChildContext(spec)
        result = {"status": "finished", "output": jsonable(call(func, kwargs, Interrupts()))}
    except BaseException:  # SystemExit and KeyboardInterrupt too: the parent stops a child by signals
        traceback.print_exc(file=sys.stdout)
        result = {"status": "failed", "error": traceback.format_exc()}
    sys.stdout.flush()
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
