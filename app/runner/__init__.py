"""The runner: ``Runner`` (``loop.py``) and the collaborators that hold its policies.

``inbox`` (typed messages to the main thread), ``outcomes`` (when outcomes are recorded), ``backlog``
(how many runs to claim, and those claimed ahead), ``limits`` (kill_time, cancels, stops, overruns),
``heartbeats`` (heartbeats and recovery), ``news`` (its events and log lines), ``workers`` (the thread
pool), ``activerun`` (a run in flight), ``wakeup`` (the database watcher).
"""

from .loop import DATABASE_RETRY_MAX, STACK_LOG_TAIL, CommandChannel, Runner, RunnerOptions

__all__ = ["DATABASE_RETRY_MAX", "STACK_LOG_TAIL", "CommandChannel", "Runner", "RunnerOptions"]
