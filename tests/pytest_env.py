"""Loaded with ``-p tests.pytest_env`` before Django is set up: the environment every test shares."""

import os

# The tests' own task functions, registered the way a user's project registers its own.
os.environ.setdefault("CONDUCTOR_TASK_MODULES", "tests.functions")
