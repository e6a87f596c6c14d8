"""Loaded with ``-p tests.pytest_env`` before Django is set up: the environment every test shares."""

import os
import uuid

# The tests' own task functions, registered the way a user's project registers its own.
os.environ.setdefault("CONDUCTOR_TASK_MODULES", "tests.functions")

# Each test process (xdist worker) gets channel groups of its own when the suite runs on Redis, so that
# parallel processes never receive each other's events. Subprocesses that tests start inherit it.
os.environ["CHANNELS_PREFIX"] = f"conductor-test-{uuid.uuid4().hex[:8]}"
