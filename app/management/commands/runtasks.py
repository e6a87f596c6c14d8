"""``manage.py runtasks``: parse options, build a Runner, run it until signalled."""

import logging
import signal
from argparse import ArgumentTypeError
from typing import Any

from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection

from ... import conf, serve
from ...bridge import ChannelBridge, layer_reaches_other_processes
from ...livelayer import CROSS_PROCESS_LAYER
from ...runner import Runner, RunnerOptions

logger = logging.getLogger("conductor.runner")
DEFAULT_ADDRESS = "127.0.0.1:8000"

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
#: This repository's console format (server/settings.py), for projects whose LOGGING gives Conductor none.
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def set_log_level(verbosity: int | None) -> None:
    """The ``conductor`` logger's level: ``-v`` when given; else what the project's LOGGING set (this
    repository's settings: CONDUCTOR_LOG_LEVEL); else INFO, as ``-v 1``."""
    conductor_logger = logging.getLogger("conductor")
    if verbosity is not None:
        conductor_logger.setLevel(VERBOSITY_LEVELS[verbosity])
    elif conductor_logger.level == logging.NOTSET:
        conductor_logger.setLevel(logging.INFO)
    ensure_log_handler(conductor_logger)


def ensure_log_handler(conductor_logger: logging.Logger) -> None:
    """A stderr handler when no handler would see Conductor's records (a startproject's LOGGING has none
    above ``conductor``): else only logging's last resort prints them, and it drops all below WARNING."""
    if not conductor_logger.hasHandlers():  # lastResort is not a handler: hasHandlers() ignores it
        handler = logging.StreamHandler()  # stderr, as the last resort and Django's console handler
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        conductor_logger.addHandler(handler)


# Option types: argparse calls them, and exits 2 with "argument --x: <message>" when one raises.


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"takes a whole number above 0, got {text!r}") from None
    if value <= 0:
        raise ArgumentTypeError(f"takes a whole number above 0, got {text!r}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"takes a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ArgumentTypeError(f"takes a finite number of seconds >= 0, got {text!r}")
    return value


def poll_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise ArgumentTypeError(f"takes a number of seconds above 0 (e.g. 5), got {text!r}")
    return value


def worker_id(text: str) -> str:
    if not text.strip():
        raise ArgumentTypeError(
            "must not be empty: name this runner (e.g. --worker-id web-1), or leave it out"
        )
    return text


def queue_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ArgumentTypeError(f"takes queue names separated by commas (e.g. default,reports), got {text!r}")
    return names


def address(text: str) -> tuple[str, int]:
    try:
        return serve.parse_address(text)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from None


class Command(BaseCommand):
    help = "Run due Conductor tasks in threads until stopped (SIGINT/SIGTERM; twice to force)."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = conf.get()
        parser.add_argument(
            "--threads", type=positive_int, default=defaults.THREADS, help="Most task threads at once."
        )
        parser.add_argument(
            "--poll",
            type=poll_seconds,
            default=defaults.POLL,
            help="Seconds between safety-net polls for due tasks.",
        )
        parser.add_argument(
            "--once", action="store_true", help="Run what is due now, wait for it, then exit."
        )
        parser.add_argument("--max-tasks", type=positive_int, help="Exit after this many runs.")
        parser.add_argument("--worker-id", type=worker_id, help="This runner's name (default: host-pid).")
        parser.add_argument(
            "--grace",
            type=seconds,
            default=defaults.GRACE,
            help="Seconds running tasks get to finish after a stop signal.",
        )
        parser.add_argument(
            "--queue",
            type=queue_names,
            metavar="NAME[,NAME...]",
            help="Serve only tasks in these queues (comma-separated; default: every queue).",
        )
        parser.add_argument(
            "--serve",
            type=address,
            nargs="?",
            const=DEFAULT_ADDRESS,
            metavar="ADDR:PORT",
            help=f"Also serve the dashboard and admin from this process (default {DEFAULT_ADDRESS}).",
        )
        parser.set_defaults(verbosity=None)  # None: -v not given, the logging settings decide

    def handle(self, *args: Any, **options: Any) -> None:
        runner_options = self._runner_options(options)
        address = self._address(options["serve"])
        self._check_database()
        set_log_level(options["verbosity"])
        bridge = self._bridge(address)
        runner = Runner(runner_options, bridge=bridge)
        self._install_signal_handlers(runner)
        try:
            code = runner.run()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bridge is not None:
                bridge.stop()
                if address is not None:
                    serve.drain_and_stop(bridge.loop)
        if code:
            raise SystemExit(code)

    def _check_database(self) -> None:
        """The database checks migrate runs (conductor.E010: a database of an older Conductor), and that
        Conductor's tables are there: one line saying what to do, not a traceback from the first query."""
        from ...runnerprocess import RunnerProcess

        try:
            self.check(tags=[Tags.database], databases=[DEFAULT_DB_ALIAS])
            tables = connection.introspection.table_names()
        except DatabaseError as exc:
            raise CommandError(f"The database cannot be used: {exc}") from exc
        if RunnerProcess._meta.db_table not in tables:
            raise CommandError(
                f"Conductor's tables are not in the database {connection.settings_dict['NAME']}: "
                "run `manage.py migrate` first."
            )

    def _address(self, parsed: tuple[str, int] | None) -> tuple[str, int] | None:
        """The address its option type parsed, refused while DEBUG is on unless it is a loopback one."""
        if parsed is None:
            return None
        host, port = parsed
        if settings.DEBUG and not serve.is_loopback(host):
            shown = f"[{host}]" if ":" in host else host
            raise CommandError(
                f"--serve {shown}:{port}: DEBUG is on and {host} is not a loopback address, so error pages "
                "would show tracebacks and settings to anyone who connects. Serve on a loopback address "
                f"(--serve 127.0.0.1:{port}), or turn DEBUG off (DJANGO_DEBUG=0 in this repository's "
                "settings) to serve the network."
            )
        return host, port

    def _bridge(self, address: tuple[str, int] | None) -> ChannelBridge | None:
        """Where live state goes: the served dashboard, other processes through Redis, or nowhere."""
        if address is not None:
            try:
                loop = serve.start_server(*address)
            except serve.ServeError as exc:
                raise CommandError(f"--serve: {exc}") from exc
            self.stdout.write(f"Dashboard: {serve.dashboard_url(*address)}")  # where the URLconf put it
            return ChannelBridge(loop=loop).start()
        if layer_reaches_other_processes():
            return ChannelBridge().start()
        logger.warning(
            "Live state stays in this process: the in-memory channel layer cannot reach a web server "
            "elsewhere, so dashboards will not update live. Use runtasks --serve, or configure a "
            f"cross-process CHANNEL_LAYERS in every process: {CROSS_PROCESS_LAYER}."
        )
        return None

    def _runner_options(self, options: dict[str, Any]) -> RunnerOptions:
        """The runner's options, each already parsed and checked by its option type."""
        return RunnerOptions(
            threads=options["threads"],
            poll=options["poll"],
            grace=options["grace"],
            once=options["once"],
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
            queues=options["queue"],
        )

    def _install_signal_handlers(self, runner: Runner) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            runner.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
