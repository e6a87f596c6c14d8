"""Django finds the models here; each lives in a module of its own."""

from .initialpassword import InitialPassword
from .lease import Lease
from .runnerprocess import RunnerProcess
from .task import Task
from .taskrun import TaskRun

__all__ = ["InitialPassword", "Lease", "RunnerProcess", "Task", "TaskRun"]
