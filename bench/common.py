"""Helpers shared by the bench's processes (bench/run.py and bench/pg.py); nothing here imports Django."""

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def say(text: str) -> None:
    print(text, flush=True)


def fail(message: str, log_path: Path | None = None) -> None:
    tail = "\n".join(log_path.read_text().splitlines()[-30:]) if log_path else ""
    raise SystemExit(f"bench failed: {message}\n{tail}")


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
    interval: float = 0.005,
) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if process is not None and process.poll() is not None:
            fail(f"runtasks exited with {process.returncode} while waiting for {what}", log_path)
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout} s waiting for {what}", log_path)
        time.sleep(interval)
    return value


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
