"""Per-run capture of what a task prints and logs.

``sys.stdout``/``sys.stderr`` are wrapped once by streams that route each write by thread: a thread that
is running a task writes into that run's buffer, every other thread writes where it always did. A logging
handler on the root logger does the same for log records.
"""

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from . import conf

_buffers: dict[int, "RunLog"] = {}
_install_lock = threading.Lock()


#: Least time between two live chunks of one run's output (what comes between is sent together).
LIVE_GAP = 0.05


class RunLog:
    """The text one run printed and logged; keeps the last ``limit`` characters.

    With ``on_chunk``, new text is also handed on live, in chunks at most every LIVE_GAP seconds;
    ``flush_live()`` hands on the rest.
    """

    def __init__(self, limit: int, on_chunk: Callable[[str], None] | None = None) -> None:
        self.limit = limit
        self._parts: list[str] = []
        self._size = 0
        self.truncated = False
        self._on_chunk = on_chunk
        self._pending: list[str] = []
        self._last_chunk = 0.0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size > 2 * self.limit:
            self._compact()
        if self._on_chunk is not None:
            self._pending.append(text)
            if time.monotonic() - self._last_chunk >= LIVE_GAP:
                self.flush_live()

    def flush_live(self) -> None:
        if self._on_chunk is None or not self._pending:
            return
        chunk, self._pending = "".join(self._pending)[-self.limit :], []
        self._last_chunk = time.monotonic()
        self._on_chunk(chunk)

    def _compact(self) -> None:
        text = "".join(self._parts)
        if len(text) > self.limit:
            text, self.truncated = text[-self.limit :], True
        self._parts, self._size = [text], len(text)

    def tail(self, characters: int) -> str:
        """The last output so far, read from another thread without disturbing the writer."""
        return "".join(list(self._parts))[-characters:]

    def getvalue(self) -> str:
        self._compact()
        text = self._parts[0] if self._parts else ""
        return (
            f"[... earlier output cut to the last {self.limit} characters]\n{text}"
            if (self.truncated)
            else text
        )


class ThreadRoutedStream:
    """A text stream that sends a task thread's writes to its run's log."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        buffer = _buffers.get(threading.get_ident())
        if buffer is None:
            return self.original.write(text)
        buffer.write(text)
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() not in _buffers:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class CaptureHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        buffer = _buffers.get(record.thread or 0)
        if buffer is not None:
            buffer.write(self.format(record) + "\n")


_handler = CaptureHandler()


def install() -> None:
    """Route output by thread; cheap to call again (tests and pytest swap sys.stdout)."""
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, ThreadRoutedStream):
                setattr(sys, name, ThreadRoutedStream(stream))
        root = logging.getLogger()
        if _handler not in root.handlers:
            root.addHandler(_handler)


@contextmanager
def capturing(on_chunk: Callable[[str], None] | None = None) -> Iterator[RunLog]:
    """Capture the current thread's prints and log records into a RunLog (live via on_chunk)."""
    install()
    ident = threading.get_ident()
    buffer = RunLog(conf.get().LOG_LIMIT, on_chunk)
    _buffers[ident] = buffer
    try:
        yield buffer
    finally:
        _buffers.pop(ident, None)
        buffer.flush_live()


@contextmanager
def paused() -> Iterator[None]:
    """Let the current thread write where it always did for a while (its debugger, at the terminal)."""
    ident = threading.get_ident()
    buffer = _buffers.pop(ident, None)
    try:
        yield
    finally:
        if buffer is not None:
            _buffers[ident] = buffer
