"""The lifecycles of tasks, runs and runners."""

from django.db import models


class TaskStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    STOPPED = "stopped", "Stopped"
    EXPIRED = "expired", "Expired"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    INTERRUPTED = "interrupted", "Interrupted"
    CANCELLED = "cancelled", "Cancelled"


class RunnerState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    DEAD = "dead", "Dead (heartbeat lost)"


#: What a one-off task becomes after a run that ended this way.
TASK_STATUS_AFTER_RUN = {
    RunStatus.FINISHED: TaskStatus.FINISHED,
    RunStatus.FAILED: TaskStatus.FAILED,
    RunStatus.TIMED_OUT: TaskStatus.TIMED_OUT,
    RunStatus.CANCELLED: TaskStatus.STOPPED,
}


class CatchUp(models.TextChoices):
    ONCE = "once", "Run once now, then keep the schedule"
    SKIP = "skip", "Skip missed periods"


class Isolation(models.TextChoices):
    THREAD = "thread", "Thread (interrupted between bytecodes)"
    PROCESS = "process", "Child process (killed at kill_time)"
