"""When to try again to reach something that went away: the first delay, doubling, capped.

The runner asks ``ready(now)`` before anything that touches the database, so an outage costs one try,
and one log line, per step of the backoff, however many outcomes, heartbeats or claims are waiting.
"""

import logging

#: Doublings beyond this change nothing (2 ** 64 times any sane first delay is past any cap); keeping the
#: exponent small keeps the arithmetic finite however long an outage lasts.
MOST_DOUBLINGS = 64


class Backoff:
    """Counts failed tries in a row, says when the next is due (monotonic seconds) and logs each step.

    ``name`` is who tries (``Runner vm-1``), ``target`` what it tries to reach (``the database``).
    """

    def __init__(self, first: float, cap: float, name: str, target: str, logger: logging.Logger) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"need 0 < first <= cap, got first={first}, cap={cap}")
        self.first = first
        self.cap = cap
        self.name = name
        self.target = target
        self.logger = logger
        self.failures = 0
        self.retry_at = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed try in a row."""
        doublings = min(max(failures - 1, 0), MOST_DOUBLINGS)
        return min(self.first * 2.0**doublings, self.cap)

    def failed(self, now: float, reason: str) -> float:
        """Count (and log, in one line) one more failed try at ``now``; returns the wait before the next."""
        self.failures += 1
        wait = self.delay(self.failures)
        reason = one_line(reason)
        self.retry_at = now + wait
        if self.failures == 1:
            self.logger.error("%s cannot reach %s (%s); running tasks go on, retrying in %.1f s",
                              self.name, self.target, reason, wait)  # fmt: skip
        else:
            self.logger.warning("%s: %s still unreachable (try %d: %s); next try in %.1f s",
                                self.name, self.target, self.failures, reason, wait)  # fmt: skip
        return wait

    def succeeded(self) -> int:
        """The target answered: start afresh (logged if tries had failed). Returns how many had."""
        failures, self.failures, self.retry_at = self.failures, 0, 0.0
        if failures:
            self.logger.info("%s reaches %s again after %d failed tries", self.name, self.target, failures)
        return failures

    def ready(self, now: float) -> bool:
        """Whether a try may be made at ``now``: always, unless waiting out a step after a failure."""
        return now >= self.retry_at

    def retry_soon(self, now: float) -> None:
        """Someone else got through to the target: try at ``now`` instead of waiting out the step."""
        if self.failing:
            self.retry_at = min(self.retry_at, now)


#: Longest reason a log line quotes.
REASON_LIMIT = 300


def one_line(text: str) -> str:
    """Driver messages span lines (libpq adds hints): one line, cut to REASON_LIMIT characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= REASON_LIMIT else flat[: REASON_LIMIT - 3] + "..."
