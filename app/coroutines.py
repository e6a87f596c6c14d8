"""Awaiting what a task function returns: ``async def`` tasks, and plain functions returning awaitables.

**One event loop per worker thread**, created when the thread first needs it and kept for the thread's
life (``loop_per_thread()`` around a worker's work), rather than one loop shared by all runs:

- a run stays on its worker thread, so everything built on threads holds for coroutines unchanged:
  ``--threads`` limits them, output capture routes by thread, and Django gives the run its own database
  connections, closed by the worker after each run as for a plain function;
- a coroutine that blocks (a sync ORM call, ``time.sleep``, a CPU loop) holds up only its own run; on a
  shared loop it would stall every other async run, and its kill_time with them;
- kill_time and cancel cancel the run's own asyncio task (``CancelledError`` at its await), touching no
  other run;
- a long-lived loop, unlike ``asyncio.run()`` per run, costs no loop set-up per run, and the clients that
  libraries keep per loop (connection pools) are reused rather than opened afresh each run.

Each run is one asyncio task on its thread's loop. When it ends, the tasks it started and left behind are
cancelled (as ``asyncio.run()`` does), so nothing of one run goes on during the next, and the database
connections its async ORM calls opened (in asgiref's executor thread) are closed. A loop that
something other than the run's task broke out of is closed and replaced. A thread without a loop of its
own (``Task.run()`` in the caller's thread, a child process) gets one for that run only.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from .interrupts import Interrupts

logger = logging.getLogger("conductor.coroutines")
#: Seconds the tasks a run left behind get to end once cancelled, before their loop is replaced.
LEFTOVER_GRACE = 1.0

_local = threading.local()


class ThreadLoop:
    """The event loop of one thread, made on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, awaitable: Awaitable[Any], interrupts: Interrupts) -> Any:
        loop = self._loop = self._loop or asyncio.new_event_loop()
        task = loop.create_task(_as_coroutine(awaitable))
        interrupts.cancel_coroutine_with(lambda exc_type: _cancel_soon(loop, task, exc_type, interrupts))
        try:
            return loop.run_until_complete(task)
        finally:
            self._tidy(loop, task)

    def close(self) -> None:
        if self._loop is not None:
            _close(self._loop)
            self._loop = None

    def _tidy(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        if task.done():
            if not task.cancelled():
                task.exception()  # the caller had it: asyncio must not log it as never retrieved
            if _cancel_leftovers(loop):
                _close_async_orm_connections(loop)
                return
        # Broken out of by something other than the task (the loop stopped, a stray interrupt), or the
        # run left tasks that would not end: a fresh loop for the next run.
        self.close()


@contextlib.contextmanager
def loop_per_thread() -> Iterator[None]:
    """Within this block, every coroutine this thread runs shares one event loop, closed at the end."""
    _local.loop = loop = ThreadLoop()
    try:
        yield
    finally:
        del _local.loop
        loop.close()


def run(awaitable: Awaitable[Any], interrupts: Interrupts) -> Any:
    """Await ``awaitable`` to its end in this thread; ``interrupts`` cancel it at its await."""
    loop = getattr(_local, "loop", None)
    if loop is None:
        with loop_per_thread():
            return run(awaitable, interrupts)
    return loop.run(awaitable, interrupts)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _as_coroutine(awaitable: Awaitable[Any]) -> Coroutine[Any, Any, Any]:
    return awaitable if asyncio.iscoroutine(awaitable) else _await(awaitable)


def _close_async_orm_connections(loop: asyncio.AbstractEventLoop) -> None:
    """Close the database connections the run's async ORM calls opened, as the worker closes its own.

    Django runs those calls in asgiref's one thread-sensitive executor thread, not in the worker, so the
    worker's close_old_connections() after the run never reaches them; this runs it in that thread.
    """
    loop.run_until_complete(sync_to_async(close_old_connections)())


def _cancel_soon(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task, exc_type: type[BaseException], interrupts: Interrupts
) -> None:
    """From the runner's thread: cancel the run's task on its loop, at the task's next await."""

    def cancel() -> None:
        message = f"{exc_type.__name__}: cancelled by Conductor"
        if task.cancel(message):  # False once the task has ended: nothing was delivered
            interrupts.record_delivery(exc_type(message))

    with contextlib.suppress(RuntimeError):  # the loop was closed: the run is over
        loop.call_soon_threadsafe(cancel)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> bool:
    """Cancel the tasks a run left on ``loop`` and let them end; False if some would not."""
    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return True
    for task in leftovers:
        task.cancel()
    done, pending = loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_GRACE))
    for task in done:
        if not task.cancelled():
            task.exception()
    if pending:
        logger.warning("%d tasks left behind by a run would not end when cancelled", len(pending))
    return not pending


def _close(loop: asyncio.AbstractEventLoop) -> None:
    try:
        if not loop.is_running():
            _cancel_leftovers(loop)
            _close_async_orm_connections(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
    except Exception:  # a broken loop is closed all the same
        logger.exception("Could not shut an event loop down cleanly")
    finally:
        with contextlib.suppress(RuntimeError):
            loop.close()
