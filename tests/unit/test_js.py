"""The dashboard's pure JavaScript (the reducer, the list/paging state, the charts' data) under Node's
own test runner: ``node --test tests/js`` (Node from Debian's ``nodejs``, which ``make test`` installs)."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_dashboard_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: install Debian's nodejs (apt-get install nodejs, as make test does).")
    result = subprocess.run(
        [node, "--test", "tests/js/"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"node --test tests/js failed:\n{result.stdout}\n{result.stderr}"
