"""What reaches the runner's main thread, as typed messages on one queue.

Worker threads, the database watcher, the channel bridge and signal handlers only ever put messages
here; the main thread alone acts on them. ``SimpleQueue.put`` is reentrant, so a signal handler may put.
"""

import queue
import time
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


#: Longest single wait on the queue. A signal that the kernel delivers to another thread (a worker asleep
#: in C, say) does not wake the main thread's wait; Python runs its handler, which puts StopRequested
#: here, only once that wait returns. Waiting in slices bounds how late a Ctrl-C is seen (two seconds),
#: for at most one extra wake-up every 2 s of an idle runner (whose waits are 5 s by default).
SIGNAL_SLICE = 2.0


class Inbox:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def receive(self, timeout: float) -> list[Message]:
        """Every message there is, waiting up to ``timeout`` seconds for the first (0: none)."""
        first = self._first(timeout)
        if first is None:
            return []
        messages = [first]
        while True:
            try:
                messages.append(self._queue.get_nowait())
            except queue.Empty:
                return messages

    def _first(self, timeout: float) -> Message | None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    return self._queue.get_nowait()
                return self._queue.get(timeout=min(remaining, SIGNAL_SLICE))
            except queue.Empty:
                if remaining <= SIGNAL_SLICE:
                    return None
