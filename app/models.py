"""Django finds the models here; each lives in a module of its own."""

from .lease import Lease
from .runnerprocess import RunnerProcess
from .task import Task
from .taskrun import TaskRun

__all__ = ["Lease", "RunnerProcess", "Task", "TaskRun"]
