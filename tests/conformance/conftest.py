"""Fixtures of the conformance tests: Conductor's runner doing the work the originals' workers did."""

from collections.abc import Callable
from typing import Any

import pytest

from app.runner import Runner, RunnerOptions
from tests.acceptance.conftest import start_runtasks  # noqa: F401 (a fixture of the worker-process tests)

WORKER_ID = "conformance-worker"


@pytest.fixture
def run_worker(transactional_db: None) -> Callable[..., int]:
    """Run what is due now and return, as ``db_worker --batch`` does: ``runtasks --once`` in this process."""

    def run(**options: Any) -> int:
        options = {"once": True, "poll": 0.2, "worker_id": WORKER_ID, **options}
        return Runner(RunnerOptions(**options)).run()

    return run
