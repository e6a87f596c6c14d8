"""One clock: the database's. Every time one process writes and another compares is read from it.

Runners on several machines compare heartbeats, leases, due times and expiry written by each other, so
a few seconds of skew between their clocks would presume live runners dead or start tasks early. On
PostgreSQL the server's clock is the one clock: statements use it in SQL (``Now()``, ``sql_now``) and
Python asks for it once per batch, claim or save (``now()``, ``reading()``). SQLite lives on one
machine, where the local clock is the database's, so nothing there asks the database for the time.

Which PostgreSQL function, and why:

- ``statement_timestamp()`` for every time a statement writes or compares: one value for the whole
  statement (every row of a claim sees the same "now"), and unlike ``now()`` not frozen at the start of
  the transaction, which may have waited on a lock or a lease well before this statement ran.
- ``clock_timestamp()`` only to measure the offset (``measure_offset``): the instant the server read its
  clock, closest to the middle of the round trip, which is what the offset's estimate assumes.

A runner that sleeps until a database time (the next due task) converts it with the offset it measures
at each heartbeat, like NTP: ``offset = db_time - (t0 + t1) / 2`` with t0, t1 the local times around the
query, keeping the sample with the shortest round trip (its error is at most half of it).
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import DateTimeField, Expression
from django.utils import timezone

#: The database's time for a statement: one value per statement, not per transaction (module docstring).
POSTGRES_NOW = "statement_timestamp()"
#: Samples per offset measurement; the fastest round trip wins.
OFFSET_SAMPLES = 3


def server_clock(using: str = "default") -> bool:
    """Whether the database has a clock of its own (on another machine): PostgreSQL."""
    return connections[using].vendor == "postgresql"


def sql_now(using: str = "default") -> str | None:
    """The SQL for the database's time in a statement, or None where the local clock is its clock."""
    return POSTGRES_NOW if server_clock(using) else None


def now(using: str = "default") -> datetime:
    """The database's time now: one cheap query on PostgreSQL, the local clock on SQLite."""
    return reading(using).database


@dataclass(frozen=True)
class Reading:
    """The database's time, and how far ahead of this process's wall clock it was when read."""

    database: datetime
    offset: float  # seconds: database time minus local time.time()

    def from_local(self, timestamp: float) -> datetime:
        """A local ``time.time()`` value as the database's clock would have said it."""
        return datetime.fromtimestamp(timestamp + self.offset, tz=UTC)


def reading(using: str = "default") -> Reading:
    """The database's time now, with the offset of this reading (0 where the local clock is its clock)."""
    if not server_clock(using):
        return Reading(timezone.now(), 0.0)
    database, offset, _ = _sample(using, POSTGRES_NOW)
    return Reading(database, offset)


def measure_offset(using: str = "default", samples: int = OFFSET_SAMPLES) -> float:
    """Seconds the database's clock is ahead of this process's (negative: behind); 0.0 on SQLite."""
    if not server_clock(using):
        return 0.0
    taken = [_sample(using, "clock_timestamp()") for _ in range(samples)]
    _, offset, _ = min(taken, key=lambda sample: sample[2])
    return offset


def _sample(using: str, function: str) -> tuple[datetime, float, float]:
    """(database time, offset, round trip) of one query of the server's clock."""
    with connections[using].cursor() as cursor:
        sent = time.time()
        cursor.execute(f"SELECT {function}")
        received = time.time()
        (database,) = cursor.fetchone()
    offset = database.timestamp() - (sent + received) / 2
    return database, offset, received - sent


def local_deadline(at: datetime, offset: float) -> float:
    """Seconds from now (by the local clock) until the database's clock shows ``at``."""
    return (at - timezone.now()).total_seconds() - offset


class Now(Expression):
    """The database's time in an ORM write or filter, ``minus`` seconds ago.

    On PostgreSQL ``statement_timestamp()`` in the statement itself (no round trip); elsewhere the local
    clock as a parameter, as before.
    """

    output_field = DateTimeField()

    def __init__(self, minus: float = 0.0) -> None:
        super().__init__(output_field=DateTimeField())
        self.minus = minus

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        moment = timezone.now() - timedelta(seconds=self.minus)
        return "%s", [connection.ops.adapt_datetimefield_value(moment)]

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list]:
        if not self.minus:
            return POSTGRES_NOW, []
        return f"({POSTGRES_NOW} - make_interval(secs => %s))", [self.minus]
