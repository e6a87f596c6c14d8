"""What keeps an idle runner cheap: defaults that poll and heartbeat rarely, and no web server imported."""

import subprocess
import sys
from pathlib import Path

from django.apps import apps
from django.core.management import get_commands
from django.test import override_settings

from app import conf
from app.apps import ConductorConfig, DaphneCommandsConfig
from app.checks import check_settings
from app.management.commands.runtasks import Command

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_poll_and_heartbeat_rarely_and_keep_the_timeout() -> None:
    with override_settings(CONDUCTOR={}):
        settings = conf.get()
        assert (settings.POLL, settings.HEARTBEAT, settings.HEARTBEAT_TIMEOUT) == (5.0, 5.0, 15.0)
        # The timeout is what recovery waits for; it stays three heartbeats, the least checks.py allows.
        assert settings.HEARTBEAT_TIMEOUT >= 3 * settings.HEARTBEAT
        assert check_settings() == []


def test_runtasks_poll_defaults_to_the_setting() -> None:
    with override_settings(CONDUCTOR={}):
        parser = Command().create_parser("manage.py", "runtasks")
        assert float(parser.parse_args([]).poll) == conf.get().POLL
    with override_settings(CONDUCTOR={"POLL": 0.5}):
        assert Command().create_parser("manage.py", "runtasks").parse_args([]).poll == 0.5


def test_app_keeps_its_own_config_beside_the_daphne_one() -> None:
    assert type(apps.get_app_config("conductor")) is ConductorConfig
    assert type(apps.get_app_config("daphne")) is DaphneCommandsConfig
    # Daphne's ASGI runserver (WebSockets) wins over staticfiles' WSGI one.
    assert get_commands()["runserver"] == "daphne"


def test_django_setup_and_runtasks_import_no_web_server() -> None:
    """Twisted and daphne's server cost every runner ~25 MB; only runserver and --serve need them."""
    code = (
        "import sys, django; django.setup();"
        "from django.core.management import load_command_class;"
        "load_command_class('app', 'runtasks');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'autobahn') "
        "or m == 'daphne.server'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"
