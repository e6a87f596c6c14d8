"""What reaches the runner's main thread, as typed messages on one queue.

Worker threads, the database watcher, the channel bridge and signal handlers only ever put messages
here; the main thread alone acts on them. ``SimpleQueue.put`` is reentrant, so a signal handler may put.
"""

import queue
from dataclasses import dataclass
from typing import Any

from ..lifecycle import Outcome


@dataclass(frozen=True)
class RunEnded:
    """A worker finished a run (``outcome`` None: it ended outside its task)."""

    run_id: int
    outcome: Outcome | None


@dataclass(frozen=True)
class StopRequested:
    """SIGINT/SIGTERM or ``Runner.stop()``: the first stops claiming, the second stops at once."""


@dataclass(frozen=True)
class WakeUp:
    """Another process committed: look for due tasks now."""


@dataclass(frozen=True)
class DashboardCommand:
    """A command from a dashboard (cancel, stack, wake), as the channel layer delivered it."""

    message: dict[str, Any]


@dataclass(frozen=True)
class LayerHealth:
    """The channel layer went away (``problem`` says why) or came back (``problem`` empty)."""

    problem: str


@dataclass(frozen=True)
class DatabaseAnswers:
    """The watcher's own connection got through: the next database try need not wait."""


Message = RunEnded | StopRequested | WakeUp | DashboardCommand | LayerHealth | DatabaseAnswers


class Inbox:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def receive(self, timeout: float) -> list[Message]:
        """Every message there is, waiting up to ``timeout`` seconds for the first (0: none)."""
        try:
            messages = [self._queue.get(timeout=timeout)] if timeout > 0 else [self._queue.get_nowait()]
        except queue.Empty:
            return []
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages
