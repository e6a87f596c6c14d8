"""When a drain's first task started and its last one finished, for peers that keep no such record.

Hooks in the peers' worker processes call ``started()`` and ``finished()``. Only the first start and the
``BENCH_SPAN_COUNT``-th finish are written, each to a file of its own: the start and the end may happen in
different processes (django-q2 runs the function in a worker and records the result in a monitor), and a
recycled worker process must not record a second "first" start. Without ``BENCH_SPAN_FILE`` both are no-ops.
"""

import os
import time
from pathlib import Path

SPAN_FILE = os.environ.get("BENCH_SPAN_FILE", "")
SPAN_COUNT = int(os.environ.get("BENCH_SPAN_COUNT", "0"))


class _Span:
    def __init__(self) -> None:
        self.start_written = not SPAN_FILE
        self.count = 0

    def started(self) -> None:
        if self.start_written:
            return
        now = time.time()
        self.start_written = True
        try:
            with Path(f"{SPAN_FILE}.start").open("x") as out:  # "x": the first process to start wins
                out.write(repr(now))
        except FileExistsError:
            pass

    def finished(self) -> None:
        if not SPAN_FILE:
            return
        self.count += 1
        if self.count == SPAN_COUNT:
            Path(f"{SPAN_FILE}.end").write_text(repr(time.time()))


span = _Span()


def read(span_file: Path) -> tuple[float, float] | None:
    """(first start, last end) once both are written, else None."""
    start, end = Path(f"{span_file}.start"), Path(f"{span_file}.end")
    if not (start.exists() and end.exists()):
        return None
    try:
        return float(start.read_text()), float(end.read_text())
    except ValueError:  # caught between the file's creation and its write
        return None
