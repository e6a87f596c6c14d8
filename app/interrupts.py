"""Conductor's own interrupts of one run, told apart from what the task raises by identity.

A task may raise anything: ``SystemExit``, ``KeyboardInterrupt``, a custom ``BaseException``, even
Conductor's own ``TimeLimitExceeded`` class. All of those are the task's failure. A run is timed out,
cancelled or interrupted only when the interrupt Conductor sent *for that run* reached it, so the type
of what comes out of the function is never enough to say which it was.

Into a thread, ``PyThreadState_SetAsyncExc`` can only raise a class, which the target thread itself
instantiates at its next bytecode. So each interrupt sends a subclass made for that one run, whose
``__init__`` records the instance on this run's ``Interrupts``: ``delivered`` is then exactly the
exception Conductor raised, and it is set only if it was raised. A run's coroutine is cancelled on its
event loop instead (app/coroutines.py), and ``delivered`` is set when the cancel reaches the task.

Once an interrupt is delivered, it decides the run's status whatever the task does next: a task that
catches ``TimeLimitExceeded`` and then calls ``sys.exit()`` (or returns) is still timed out.
"""

import threading
from collections.abc import Callable

#: Sends an exception class into the run's thread (while, and only while, it runs that run).
RaiseInThread = Callable[[type[BaseException]], bool]
#: Cancels the run's coroutine on its event loop, saying which interrupt it is.
CancelCoroutine = Callable[[type[BaseException]], None]


class Interrupts:
    """At most one interrupt per run, sent into its thread or to its coroutine; was it delivered?"""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the runner sends while the run's thread may switch to a coroutine
        self._sent = False
        self._cancel_coroutine: CancelCoroutine | None = None
        self.delivered: BaseException | None = None

    def send(self, exc_type: type[BaseException], raise_in_thread: RaiseInThread) -> bool:
        """Interrupt the run with ``exc_type`` (once); whether it was sent."""
        with self._lock:
            if self._sent:
                return False
            if self._cancel_coroutine is not None:
                self._cancel_coroutine(exc_type)
                self._sent = True
            else:
                self._sent = raise_in_thread(self._recording(exc_type))
            return self._sent

    def cancel_coroutine_with(self, cancel: CancelCoroutine) -> None:
        """From now on the run awaits a coroutine: interrupts cancel it rather than raise in the thread."""
        with self._lock:
            self._cancel_coroutine = cancel

    def record_delivery(self, interrupt: BaseException) -> None:
        self.delivered = interrupt

    def _recording(self, exc_type: type[BaseException]) -> type[BaseException]:
        """A subclass of ``exc_type`` for this run only, that records its instance when it is raised."""
        record = self.record_delivery

        def __init__(self: BaseException, *args: object) -> None:
            exc_type.__init__(self, *args)
            record(self)

        # Named as exc_type, so tracebacks and class paths read exactly as for exc_type itself.
        names = {"__module__": exc_type.__module__, "__qualname__": exc_type.__qualname__}
        return type(exc_type.__name__, (exc_type,), {"__init__": __init__, **names})
