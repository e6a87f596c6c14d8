import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.runner import Runner, RunnerOptions


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


class RunningRunner:
    """A Runner on a background thread of the test process, stopped and joined at teardown."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._main, name="test-runner", daemon=True)

    def _main(self) -> None:
        self.exit_code = self.runner.run()

    def start(self) -> "RunningRunner":
        self.thread.start()
        assert self.runner.up.wait(10), "runner did not come up"
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        self.runner.stop()
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.runner.stop()  # second request: stop at once
            self.thread.join(timeout)
        assert not self.thread.is_alive(), "runner did not stop"
        return self.exit_code


@pytest.fixture
def start_runner() -> Iterator[Callable[..., RunningRunner]]:
    started: list[RunningRunner] = []

    def start(**options: Any) -> RunningRunner:
        options.setdefault("poll", 0.2)
        running = RunningRunner(Runner(RunnerOptions(**options))).start()
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
