"""Django finds the models here; each lives in a module of its own."""

from .history import HeartbeatSample, QueueDepthSample
from .initialpassword import InitialPassword
from .lease import Lease
from .runnerprocess import RunnerProcess
from .task import Task
from .taskrun import TaskRun

__all__ = ["HeartbeatSample", "InitialPassword", "Lease", "QueueDepthSample", "RunnerProcess", "Task",
           "TaskRun"]  # fmt: skip
