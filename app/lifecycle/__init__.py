"""The lifecycle of tasks, runs and runners, each step defined once.

=================  ==========================================  ==========================================
step               what it does                                where
=================  ==========================================  ==========================================
due                waiting, unpaused, ``next_run`` passed       ``queries.DUE``; ``due()`` for the ORM
expire             a due task past ``expires_at``: expired      ``queries.expire`` (part of each claim)
claim and start    due -> running, fence bumped, a run opened  ``claiming``: ``Claimer``, ``claim()``
                                                               ``claim_now()`` (``Task.run()``)
finish, fail,      the run closed, the task due again,         ``recording``: ``finish_many()``,
time out,          retried, looping or done (``run_effect``),  ``finish()``, ``run_effect()``,
interrupt          fenced against late results                 ``retry_at_after()``
overrun            past kill_time, not yet interruptible       ``recording.mark_overrunning()``
recover            a dead runner's runs interrupted, tasks     ``recovery``: ``recover()``,
                   due again, leases freed                     ``recover_stale()``, ``give_back()``,
                                                               ``sign_in()``
=================  ==========================================  ==========================================

People's actions (run now, stop looping, pause, resume) are ``Task`` methods: one-row writes that the
admin and the dashboard call through ``app/actions.py``. The hand-written SQL is in ``queries``, each
statement named once. This package sits above the models and below execution and the runner
(docs/runner.md, "Layers").
"""

from .claiming import Claimer, claim, claim_now, due
from .outcome import Outcome
from .recording import REFUSED, finish, finish_many, mark_overrunning, retry_at_after, run_effect
from .recovery import give_back, recover, recover_stale, sign_in

__all__ = ["REFUSED", "Claimer", "Outcome", "claim", "claim_now", "due", "finish", "finish_many",
           "give_back", "mark_overrunning", "recover", "recover_stale", "retry_at_after", "run_effect",
           "sign_in"]  # fmt: skip
