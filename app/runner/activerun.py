"""A run in flight on this runner: its thread, its limits, and how to look inside it."""

import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from .. import events
from ..context import TaskContext
from .workers import RunThread


@dataclass
class ActiveRun:
    task: Any
    run: Any
    thread: RunThread
    context: TaskContext
    started: float  # monotonic
    deadline: float | None  # monotonic time of kill_time
    interrupted_at: float | None = None
    overrunning: bool = False
    cancel_deadline: float | None = None

    @property
    def state(self) -> str:
        if self.overrunning:
            return "overrunning"
        if self.context.cancelled:
            return "cancelling"
        if self.interrupted_at is not None:
            return "interrupting"
        return "running"

    def describe(self) -> dict[str, Any]:
        """The thread as the dashboard shows it (JSON)."""
        return {
            "run": self.run.pk,
            "task": self.task.pk,
            "task_name": self.task.name,
            "name": self.thread.name,
            "ident": self.thread.ident,
            "daemon": self.thread.daemon,
            "alive": self.thread.is_alive(),
            "state": self.state,
            "started_at": events.database_time() - (time.monotonic() - self.started),  # as pages time it
            "loop_count": self.task.attempts,
            "progress": self.context.progress,
            "progress_message": self.context.progress_message,
        }

    def stack(self) -> str:
        """What the thread is doing now: its current Python stack, innermost call last."""
        frame = sys._current_frames().get(self.thread.ident or -1)
        if frame is None:
            return "(the thread has ended)"
        return "".join(traceback.format_stack(frame))
