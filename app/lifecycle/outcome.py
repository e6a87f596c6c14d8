"""How one execution ended: what execution produces and recording consumes."""

from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    """How one execution ended, as measured in the thread that ran it."""

    status: str
    started: float
    finished: float
    output: Any = None
    error: str = ""
    log: str = ""
    thread_name: str = ""
    thread_ident: int | None = None
    progress: float | None = None
    progress_message: str = ""

    @property
    def duration(self) -> float:
        return max(0.0, self.finished - self.started)
