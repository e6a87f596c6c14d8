"""What a running task can use: report progress and see whether it has been asked to stop.

A task function that has a parameter named ``context`` is given a ``TaskContext``::

    @register
    def import_rows(path: str, context: TaskContext) -> int:
        rows = load(path)
        for number, row in enumerate(rows, 1):
            if context.stop_requested:      # cancel from the dashboard, or the runner is stopping
                return number
            save(row)
            context.report_progress(number / len(rows), f"{number} of {len(rows)} rows")
        return len(rows)

Cancelling asks politely first (``stop_requested`` turns True); a task that does not end within the
cancel grace period is interrupted.

A run can be recovered while its body still runs (its runner was frozen past the heartbeat timeout), and
the task then runs again elsewhere. ``context.fence`` is the run's fencing token and
``context.still_owner()`` asks the database whether this run still holds its claim (README, "Fencing
from inside a task").
"""

import functools
import inspect
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from . import events
from .interrupts import Interrupts

#: Least time between two published progress events of one run (the last one is always kept).
PROGRESS_EVENT_GAP = 0.1
CONTEXT_PARAMETER = "context"


class TaskContext:
    def __init__(
        self,
        task: Any,
        run_id: int | None,
        attempt: int = 1,
        runner: str | None = None,
        fence: int | None = None,
    ) -> None:
        self.runner = runner  # the worker id of the runner running it, if any
        # The run's fencing token; a claimed task's own fence is the same (Task.run() passes no run).
        self.fence: int | None = fence if fence is not None else getattr(task, "fence", None)
        self.db_use = bool(getattr(task, "db_use", False))
        self.task_pk = task.pk
        self.task_id = task.task_id
        self.task_name = task.name
        self.run_id = run_id
        self.attempt = attempt
        self.progress: float | None = None
        self.progress_message = ""
        self.cancelled = False
        self.log: Any = None  # the run's RunLog while it runs
        self.interrupts = Interrupts()  # Conductor's own, told apart from the task's exceptions
        self._stop = threading.Event()
        self._last_progress_event = 0.0

    @property
    def stop_requested(self) -> bool:
        """True once the run was cancelled or its runner is stopping: end soon, cleanly."""
        return self._stop.is_set()

    def request_stop(self, cancel: bool = False) -> None:
        """Ask the task to end; ``cancel`` records the run as cancelled, not finished."""
        self.cancelled = self.cancelled or cancel
        self._stop.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when a stop is requested; True if it was."""
        return self._stop.wait(seconds)

    def still_owner(self) -> bool:
        """Whether this run still holds its claim (and, for db_use, the lease): one small query.

        False once the run was recovered (its runner was presumed dead, e.g. while frozen) or its task
        claimed again: another run may be doing the same work now. Ask before each irreversible step.
        """
        return self.fence is not None and self._held().exists()

    async def astill_owner(self) -> bool:
        """``still_owner()`` for ``async def`` tasks."""
        return self.fence is not None and await self._held().aexists()

    def _held(self) -> Any:
        if _claims is None:
            raise RuntimeError("still_owner() needs Django set up (Conductor's app installs the query)")
        return _claims(self.task_pk, self.fence, self.db_use)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Report how far the run is (0 to 1) with a short message; shown live, kept on the run."""
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not math.isfinite(fraction):
            raise TypeError(f"progress must be a number from 0 to 1, got {fraction!r}")
        if not 0 <= fraction <= 1:
            raise ValueError(f"progress must be from 0 to 1, got {fraction}")
        self.progress, self.progress_message = float(fraction), str(message)[:200]
        now = time.monotonic()
        if fraction >= 1 or now - self._last_progress_event >= PROGRESS_EVENT_GAP:
            self._last_progress_event = now
            events.publish(
                events.RUN_PROGRESS,
                runner=self.runner,
                task=self.task_pk,
                task_id=self.task_id,
                name=self.task_name,
                run=self.run_id,
                progress=self.progress,
                message=self.progress_message,
            )


#: ``(task pk, fence, db_use) -> queryset`` of the task while that claim holds it; installed by
#: ``ConductorConfig.ready()`` (the models sit above this module, which they import).
_claims: Callable[[int, int, bool], Any] | None = None


def install_claim_query(claims: Callable[[int, int, bool], Any]) -> None:
    global _claims
    _claims = claims


def accepts_context(func: Callable[..., Any]) -> bool:
    """Whether ``func`` has a ``context`` parameter (worked out once per function: runs are many)."""
    try:
        return _accepts_context(func)
    except TypeError:  # unhashable callables are rare: look each time
        return _has_context_parameter(func)


@functools.lru_cache(maxsize=1024)
def _accepts_context(func: Callable[..., Any]) -> bool:
    return _has_context_parameter(func)


def _has_context_parameter(func: Callable[..., Any]) -> bool:
    try:
        return CONTEXT_PARAMETER in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
