"""``New_Thread``: a thread that calls a function once or in a loop, until stopped or interrupted.

The name and constructor follow the ``New_Thread`` of USGS ShakeCast (``sc/app/newthread.py``),
whose API Conductor keeps, without its bug: that class set ``self._stop = Event()``, which shadows
``threading.Thread._stop`` and breaks ``join()``. No name of ours here shadows a Thread internal.
"""

import ctypes
import logging
import math
import pdb
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db import connections

logger = logging.getLogger("conductor.thread")

# One pdb session at a time: two threads sharing one terminal would interleave their prompts.
_pdb_lock = threading.Lock()


class ThreadInterrupted(BaseException):
    """Raised inside a thread to interrupt it.

    A ``BaseException`` rather than an ``Exception`` so that an ``except Exception`` in user code
    does not swallow it and the thread really ends.
    """


def post_mortem(exc: BaseException) -> bool:
    """Open pdb on ``exc``'s traceback if a person can use it; return whether pdb ran.

    pdb needs a terminal on both stdin and stdout: without one (a service, a pipe, pytest) it would
    hang on input nobody can give, so we log why we did not start it instead.
    """
    thread_name = threading.current_thread().name
    for stream_name in ("stdin", "stdout"):
        if not _isatty(getattr(sys, stream_name)):
            logger.warning(
                "use_pdb=True but %s is not a terminal; not starting pdb for thread %s",
                stream_name,
                thread_name,
            )
            return False
    if exc.__traceback__ is None:
        logger.warning("use_pdb=True but %r has no traceback; not starting pdb", exc)
        return False
    with _pdb_lock:
        pdb.post_mortem(exc.__traceback__)
    return True


def _isatty(stream: Any) -> bool:
    """``stream.isatty()``, False for a missing or closed stream (a daemon may have neither)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def set_async_exc(ident: int, exc_type: type[BaseException] | None) -> int:
    """Raise ``exc_type`` in thread ``ident`` at its next bytecode (None cancels a pending one).

    Returns how many thread states were affected.
    """
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exc)


def _close_db_connections() -> None:
    """Close this thread's Django database connections: Django opens one per thread, which leaks."""
    if not settings.configured:
        return
    try:
        connections.close_all()
    except Exception:
        logger.exception("Could not close the database connections of thread %s", _current_name())


def _current_name() -> str:
    return threading.current_thread().name


class New_Thread(threading.Thread):  # the published (ShakeCast) name, kept for its API
    """Call ``func(**args_in)`` in a thread, once or (``loop=True``) every ``loop_time`` seconds.

    ``start``, ``join``, ``is_alive``, ``name``, ``ident``, ``daemon`` are threading.Thread's own.
    ``stop()`` ends a loop promptly; ``interrupt()`` raises an exception inside the thread.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        args_in: Mapping[str, Any] | None = None,
        loop: bool = False,
        loop_time: float = 5,
        use_pdb: bool = False,
        *,
        name: str | None = None,
        daemon: bool | None = None,
    ) -> None:
        _check_arguments(func, args_in, loop, loop_time)
        # target=func only gives the documented default name "Thread-N (func)"; run() is ours.
        super().__init__(target=func, name=name, daemon=daemon)
        self.func = func
        self.args_in = dict(args_in) if args_in is not None else None
        self.loop = loop
        self.loop_time = loop_time
        self.use_pdb = use_pdb
        self.exception: BaseException | None = None
        self.result: Any = None
        self.loop_count = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._stop_event = threading.Event()
        # Guards _interruptible so interrupt() only ever raises inside run(), and at most once.
        self._interrupt_lock = threading.Lock()
        self._interruptible = False

    @property
    def stop_requested(self) -> bool:
        """Whether stop() or interrupt() was called: a looping thread makes no further call."""
        return self._stop_event.is_set()

    def stop(self) -> None:
        """Ask for no further call to func: a loop ends at once, without waiting out loop_time.

        A call already in progress runs to its end (use interrupt() to cut it short). Called before
        start(), func is never called.
        """
        self._stop_event.set()

    def isAlive(self) -> bool:
        """Alias of is_alive(), kept because the published New_Thread API documents it."""
        return self.is_alive()

    def interrupt(self, exc_type: type[BaseException] = ThreadInterrupted) -> bool:
        """Raise ``exc_type`` inside the thread, and stop its loop; return whether it was sent.

        The exception is raised at the thread's next Python bytecode. A thread blocked in C code
        (``time.sleep``, ``socket.recv``, ``Lock.acquire``) is only interrupted when that call
        returns; only a child process can be killed for sure. It ends up on ``exception`` unless
        func's last call ended first. Returns False when the thread is not alive (not started, or
        finished) or was already interrupted.
        """
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TypeError(f"exc_type must be an exception class, got {exc_type!r}")
        with self._interrupt_lock:
            if not (self._interruptible and self.is_alive()):
                return False
            self._interruptible = False
            self._stop_event.set()
            affected = set_async_exc(self.ident, exc_type)
            if affected > 1:
                set_async_exc(self.ident, None)
                raise SystemError(f"PyThreadState_SetAsyncExc affected {affected} thread states")
        return affected == 1

    def run(self) -> None:
        """Call func once or in a loop; record results and exceptions instead of dying on them."""
        self.started_at = time.time()
        try:
            self._run_interruptibly()
        except BaseException as exc:  # an interrupt() delivered as the calls ended
            self._ended_by(exc)
        _close_db_connections()
        self.finished_at = time.time()

    def _run_interruptibly(self) -> None:
        """The only stretch in which interrupt() raises; none reaches threading's own cleanup.

        interrupt() sends at most one exception. Delivered anywhere in here, even on entry or in
        the finally, it ends up in run()'s except; one not delivered yet is cancelled on the way out.
        """
        with self._interrupt_lock:
            self._interruptible = True
        try:
            self._call_loop()
        except BaseException as exc:  # an interrupt() delivered between two calls
            self._ended_by(exc)
        finally:
            with self._interrupt_lock:
                self._interruptible = False
            set_async_exc(threading.get_ident(), None)

    def _call_loop(self) -> None:
        while not self._stop_event.is_set():
            if not self._call_once() or not self.loop:
                return
            if self._stop_event.wait(self.loop_time):
                return

    def _call_once(self) -> bool:
        """One call to func; False when it ended by a BaseException that must end the thread."""
        try:
            if self.args_in is None:
                self.result = self.func()
            else:
                self.result = self.func(**self.args_in)
        except Exception as exc:
            self.exception = exc
            logger.exception("Thread %s: %s raised %r", self.name, _func_name(self.func), exc)
            if self.use_pdb:
                post_mortem(exc)
            return True
        except BaseException as exc:
            self._ended_by(exc)
            return False
        finally:
            self.loop_count += 1
        return True

    def _ended_by(self, exc: BaseException) -> None:
        """Keep an interrupt or exit; a warning without traceback, since it was asked for."""
        self.exception = exc
        self._stop_event.set()
        logger.warning("Thread %s ended by %s", self.name, type(exc).__name__)

    def __repr__(self) -> str:
        if self.ident is None:
            state = "initial"
        elif self.is_alive():
            state = f"started {self.ident}"
        else:
            state = "stopped"
        parts = [f"{self.name}, {state}", f"func={_func_name(self.func)}"]
        if self.daemon:
            parts.append("daemon")
        if self.loop:
            parts.append(f"loop every {self.loop_time}s")
        parts.append(f"calls={self.loop_count}")
        if self.stop_requested:
            parts.append("stop requested")
        if self.exception is not None:
            parts.append(f"exception={self.exception!r}")
        return f"<{type(self).__name__}({', '.join(parts)})>"


def _check_arguments(func: Any, args_in: Any, loop: bool, loop_time: Any) -> None:
    """Fail at construction, in the caller's thread, rather than later inside the new thread."""
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    if args_in is not None:
        if not isinstance(args_in, Mapping):
            raise TypeError(
                "args_in must be a mapping of keyword arguments (e.g. {'x': 1}), "
                f"got {type(args_in).__name__}"
            )
        for key in args_in:
            if not isinstance(key, str):
                raise TypeError(f"args_in keys must be argument names (str), got {key!r}")
    if loop and not _is_positive_number(loop_time):
        raise ValueError(f"loop_time must be a positive number of seconds when loop=True, got {loop_time!r}")


def _is_positive_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value > 0


def _func_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)
