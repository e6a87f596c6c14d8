"""``manage.py runtasks``: parse options, build a Runner, run it until signalled."""

import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import conf, serve
from ...bridge import ChannelBridge, layer_reaches_other_processes
from ...runner import Runner, RunnerOptions

logger = logging.getLogger("conductor.runner")
DEFAULT_ADDRESS = "127.0.0.1:8000"

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def set_log_level(verbosity: int | None) -> None:
    """The ``conductor`` logger's level: ``-v`` when given; else what the project's LOGGING set (this
    repository's settings: CONDUCTOR_LOG_LEVEL); else INFO, as ``-v 1``."""
    conductor_logger = logging.getLogger("conductor")
    if verbosity is not None:
        conductor_logger.setLevel(VERBOSITY_LEVELS[verbosity])
    elif conductor_logger.level == logging.NOTSET:
        conductor_logger.setLevel(logging.INFO)


def positive_int(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise CommandError(f"{option} takes a whole number above 0, got {text!r}") from None
    if value <= 0:
        raise CommandError(f"{option} takes a whole number above 0, got {value}")
    return value


def seconds(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{option} takes a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise CommandError(f"{option} takes a finite number of seconds >= 0, got {text!r}")
    return value


class Command(BaseCommand):
    help = "Run due Conductor tasks in threads until stopped (SIGINT/SIGTERM; twice to force)."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = conf.get()
        parser.add_argument(
            "--threads", type=str, default=str(defaults.THREADS), help="Most task threads at once."
        )
        parser.add_argument(
            "--poll",
            type=str,
            default=str(defaults.POLL),
            help="Seconds between safety-net polls for due tasks.",
        )
        parser.add_argument(
            "--once", action="store_true", help="Run what is due now, wait for it, then exit."
        )
        parser.add_argument("--max-tasks", type=str, help="Exit after this many runs.")
        parser.add_argument("--worker-id", help="This runner's name (default: host-pid).")
        parser.add_argument(
            "--grace",
            type=str,
            default=str(defaults.GRACE),
            help="Seconds running tasks get to finish after a stop signal.",
        )
        parser.add_argument(
            "--queue",
            metavar="NAME[,NAME...]",
            help="Serve only tasks in these queues (comma-separated; default: every queue).",
        )
        parser.add_argument(
            "--serve",
            nargs="?",
            const=DEFAULT_ADDRESS,
            metavar="ADDR:PORT",
            help=f"Also serve the dashboard and admin from this process (default {DEFAULT_ADDRESS}).",
        )
        parser.set_defaults(verbosity=None)  # None: -v not given, the logging settings decide

    def handle(self, *args: Any, **options: Any) -> None:
        runner_options = self._runner_options(options)
        address = self._address(options["serve"])
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

    def _address(self, text: str | None) -> tuple[str, int] | None:
        if text is None:
            return None
        try:
            host, port = serve.parse_address(text)
        except ValueError as exc:
            raise CommandError(f"--serve: {exc}") from exc
        if settings.DEBUG and not serve.is_loopback(host):
            raise CommandError(
                f"--serve {text}: DEBUG is on and {host} is not a loopback address, so error pages would "
                "show tracebacks and settings to anyone who connects. Serve on a loopback address "
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
            self.stdout.write(f"Dashboard: http://{address[0]}:{address[1]}/dashboard/")
            return ChannelBridge(loop=loop).start()
        if layer_reaches_other_processes():
            return ChannelBridge().start()
        logger.warning(
            "Live state stays in this process: the in-memory channel layer cannot reach a web server "
            "elsewhere, so dashboards will not update live. Use runtasks --serve, or set REDIS_URL."
        )
        return None

    def _runner_options(self, options: dict[str, Any]) -> RunnerOptions:
        poll = seconds(options["poll"], "--poll")
        if poll == 0:
            raise CommandError("--poll must be above 0 seconds")
        worker_id = options["worker_id"]
        if worker_id is not None and not worker_id.strip():
            raise CommandError("--worker-id must not be empty")
        return RunnerOptions(
            threads=positive_int(options["threads"], "--threads"),
            poll=poll,
            grace=seconds(options["grace"], "--grace"),
            once=options["once"],
            max_tasks=positive_int(options["max_tasks"], "--max-tasks")
            if options["max_tasks"] is not None
            else None,
            worker_id=worker_id,
            queues=self._queues(options["queue"]),
        )

    def _queues(self, text: str | None) -> list[str] | None:
        if text is None:
            return None
        names = [name.strip() for name in text.split(",")]
        if not all(names):
            raise CommandError(f"--queue takes queue names separated by commas, got {text!r}")
        return names

    def _install_signal_handlers(self, runner: Runner) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            runner.stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
