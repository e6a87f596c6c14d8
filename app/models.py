"""Django finds the models here; each lives in a module of its own."""

from app.lease import Lease
from app.runnerprocess import RunnerProcess
from app.task import Task
from app.taskrun import TaskRun

__all__ = ["Lease", "RunnerProcess", "Task", "TaskRun"]
