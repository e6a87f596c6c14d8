"""The runner's inbox (app.runner.inbox): typed messages, every one waiting taken at once."""

import threading

from app.lifecycle import Outcome
from app.runner.inbox import DashboardCommand, Inbox, RunEnded, StopRequested, WakeUp
from app.status import RunStatus


def test_receive_takes_every_waiting_message_in_order():
    inbox = Inbox()
    outcome = Outcome(RunStatus.FINISHED, 0.0, 1.0)
    inbox.put(RunEnded(7, outcome))
    inbox.put(StopRequested())
    inbox.put(DashboardCommand({"command": "wake"}))

    assert inbox.receive(0) == [RunEnded(7, outcome), StopRequested(), DashboardCommand({"command": "wake"})]
    assert inbox.receive(0) == []


def test_receive_waits_for_a_message_from_another_thread():
    inbox = Inbox()
    threading.Thread(target=inbox.put, args=(WakeUp(),)).start()
    assert inbox.receive(10) == [WakeUp()]


def test_receive_returns_nothing_after_its_timeout():
    assert Inbox().receive(0.01) == []
