"""System checks: every bad Conductor setting is reported with what to change."""

import importlib.util
import math
import os
from dataclasses import fields

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError, connections

from .conf import CHARTS_WINDOW, ConductorSettings, raw_settings, setting_name

POSITIVE_NUMBERS = ("POLL", "HEARTBEAT", "HEARTBEAT_TIMEOUT", "CLOCK_SKEW_WARNING", "INTERRUPT_WAIT",
                    "CANCEL_GRACE", "HISTORY_RETENTION")  # fmt: skip
POSITIVE_INTEGERS = ("THREADS", "LOG_LIMIT", "EVENT_QUEUE_SIZE")


def _error(message: str, hint: str, number: int) -> Error:
    return Error(message, hint=hint, id=f"conductor.E{number:03d}")


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list:
    raw = raw_settings()
    if not isinstance(raw, dict):
        return [_error("CONDUCTOR must be a dict.", "Set CONDUCTOR = {} or a dict of settings.", 1)]
    known = {f.name for f in fields(ConductorSettings)}
    errors = [
        _error(
            f"CONDUCTOR has an unknown key {key!r}.",
            f"Remove it or use one of: {', '.join(sorted(known))}.",
            2,
        )
        for key in raw
        if key not in known
    ]
    errors += _check_numbers(raw)
    errors += _check_task_modules(raw.get("TASK_MODULES", []))
    if not errors:
        current = ConductorSettings.from_django()
        errors += _check_heartbeat(current) + _check_history_retention(current)
    return errors


def _check_numbers(raw: dict) -> list:
    errors = []
    for key in POSITIVE_NUMBERS + POSITIVE_INTEGERS:
        if key not in raw:
            continue
        value = raw[key]
        wanted = int if key in POSITIVE_INTEGERS else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, wanted)
            or not (math.isfinite(value) and value > 0)
        ):
            kind = "a positive whole number" if key in POSITIVE_INTEGERS else "a positive number"
            errors.append(
                _error(
                    f"{setting_name(key)} is {value!r}; it must be {kind}.",
                    f"Set {setting_name(key)} to {kind} of seconds or items, "
                    f"or remove it to use the default ({getattr(ConductorSettings, key)}).",
                    3,
                )
            )
    if "GRACE" in raw and (
        isinstance(raw["GRACE"], bool)
        or not isinstance(raw["GRACE"], int | float)
        or not (math.isfinite(raw["GRACE"]) and raw["GRACE"] >= 0)
    ):
        errors.append(
            _error(
                f"{setting_name('GRACE')} is {raw['GRACE']!r}; it must be a finite number of seconds >= 0.",
                "Set it to how long a stopping runner waits for running tasks, e.g. 10.",
                3,
            )
        )
    return errors


def _check_task_modules(modules) -> list:
    if not isinstance(modules, list | tuple) or not all(isinstance(m, str) for m in modules):
        return [
            _error(
                "CONDUCTOR['TASK_MODULES'] must be a list of dotted module names.",
                "For example ['myproject.jobs'], or set CONDUCTOR_TASK_MODULES=myproject.jobs.",
                4,
            )
        ]
    return []


def _check_heartbeat(conf: ConductorSettings) -> list:
    if conf.HEARTBEAT_TIMEOUT >= 3 * conf.HEARTBEAT:
        return []
    return [
        _error(
            f"{setting_name('HEARTBEAT_TIMEOUT')} ({conf.HEARTBEAT_TIMEOUT}) is less than three "
            f"heartbeats ({conf.HEARTBEAT} s each): live runners would be declared dead.",
            "Raise HEARTBEAT_TIMEOUT to at least 3 x HEARTBEAT.",
            6,
        )
    ]


def _check_history_retention(conf: ConductorSettings) -> list:
    if conf.HISTORY_RETENTION >= CHARTS_WINDOW:
        return []
    return [
        _error(
            f"{setting_name('HISTORY_RETENTION')} ({conf.HISTORY_RETENTION:g} s) is shorter than the hour "
            f"the dashboard's charts show ({CHARTS_WINDOW:g} s): their history would end in a gap.",
            f"Raise HISTORY_RETENTION to at least {CHARTS_WINDOW:g}, or remove it to use the default "
            f"({ConductorSettings.HISTORY_RETENTION:g}).",
            11,
        )
    ]


@register(Tags.database, deploy=False)
def check_sqlite_wal(app_configs=None, databases=None, **kwargs) -> list:
    """SQLite without WAL and IMMEDIATE transactions fails under concurrent runners."""
    config = connections.databases.get("default", {})
    if config.get("ENGINE") != "django.db.backends.sqlite3":
        return []
    options = config.get("OPTIONS", {})
    problems = []
    if "journal_mode=wal" not in options.get("init_command", "").lower().replace(" ", ""):
        problems.append("init_command does not set PRAGMA journal_mode=WAL")
    if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
        problems.append('transaction_mode is not "IMMEDIATE"')
    if not problems:
        return []
    return [
        Warning(
            "The SQLite database is not set up for concurrent runners: " + "; ".join(problems) + ".",
            hint=f"Use {__package__}.sqlite_options() as the database OPTIONS "
            f"(DATABASES['default']['OPTIONS'] = {__package__}.sqlite_options()).",
            id="conductor.W001",
        )
    ]


@register(Tags.compatibility)
def check_project_wiring(app_configs=None, **kwargs) -> list:
    """What a project that installs Conductor must add besides INSTALLED_APPS, each with the line to add."""
    errors = []
    if "channels" not in settings.INSTALLED_APPS:
        errors.append(
            _error(
                "Conductor's dashboard needs Django Channels, which is not in INSTALLED_APPS.",
                'Add "channels" to INSTALLED_APPS (before "conductor").',
                7,
            )
        )
    errors += _check_channel_layer()
    errors += _check_asgi_routes()
    return errors


def _check_channel_layer() -> list:
    backend = str(getattr(settings, "CHANNEL_LAYERS", {}).get("default", {}).get("BACKEND", ""))
    if _channels_redis_installed():
        return []
    install = "pip install 'django-conductor[redis]' (or channels-redis)"
    if backend.startswith("channels_redis."):
        return [
            _error(
                f"CHANNEL_LAYERS uses {backend}, but channels-redis is not installed.",
                f"{install}, or use the in-memory layer on one machine.",
                8,
            )
        ]
    if os.environ.get("REDIS_URL"):
        return [
            Warning(
                "REDIS_URL is set, but channels-redis is not installed: runners and web servers in "
                "different processes cannot share live state.",
                hint=f"{install} and set CHANNEL_LAYERS to channels_redis.core.RedisChannelLayer.",
                id="conductor.W002",
            )
        ]
    return []


def _channels_redis_installed() -> bool:
    return importlib.util.find_spec("channels_redis") is not None


def _check_asgi_routes() -> list:
    """A project whose ASGI application does not route the dashboard's socket gets a page that never goes
    live (daphne answers the socket with 500): say so at start-up rather than in the browser."""
    if getattr(settings, "ASGI_APPLICATION", None):
        return _check_named_asgi_application()
    return _check_conventional_asgi_application()


def _check_named_asgi_application() -> list:
    from .asgi import routes_dashboard_socket

    try:
        from channels.routing import get_default_application

        application = get_default_application()
    except Exception as exc:  # the project's own asgi.py failed: its traceback is not ours to hide
        return [
            _error(
                f"ASGI_APPLICATION {settings.ASGI_APPLICATION!r} could not be loaded: {exc}",
                "Fix the project's asgi.py, or remove ASGI_APPLICATION to let runtasks --serve build one.",
                9,
            )
        ]
    if routes_dashboard_socket(application):
        return []
    return [
        _error(
            f"ASGI_APPLICATION {settings.ASGI_APPLICATION!r} does not route Conductor's dashboard socket.",
            "In asgi.py: `from conductor.asgi import with_conductor` and "
            "`application = with_conductor(get_asgi_application())` (docs/install.md).",
            9,
        )
    ]


def _check_conventional_asgi_application() -> list:
    """Without ASGI_APPLICATION, daphne and uvicorn are pointed at the asgi.py that startproject wrote
    beside wsgi.py: check that one. A warning, not an error: runtasks --serve adds the route itself."""
    path = conventional_asgi_path()
    if path is None or not _module_exists(path.rpartition(".")[0]):
        return []
    from django.utils.module_loading import import_string

    from .asgi import routes_dashboard_socket

    try:
        routed = routes_dashboard_socket(import_string(path))
    except Exception as exc:  # the project's own asgi.py failed: its traceback is not ours to hide
        return [
            _asgi_warning(path, f"{path} (which daphne and uvicorn would serve) could not be loaded: {exc}.")
        ]
    if routed:
        return []
    return [_asgi_warning(path, f"{path} (which daphne and uvicorn would serve) does not route Conductor's "
                                "dashboard socket: the dashboard would never go live.")]  # fmt: skip


def _asgi_warning(path: str, message: str) -> Warning:
    module = path.rpartition(".")[0]
    return Warning(
        message,
        hint=f"At the end of {module.replace('.', '/')}.py add `from conductor.asgi import with_conductor` "
        "and `application = with_conductor(application)` (docs/install.md, step 4); runtasks --serve "
        "needs neither.",
        id="conductor.W005",
    )


def conventional_asgi_path() -> str | None:
    """``server.asgi.application`` for ``WSGI_APPLICATION = "server.wsgi.application"``, else None."""
    wsgi = getattr(settings, "WSGI_APPLICATION", None)
    if not wsgi or "." not in wsgi:
        return None
    package = wsgi.rsplit(".", 2)[0] if wsgi.count(".") >= 2 else ""
    return f"{package}.asgi.application" if package else "asgi.application"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # its package is missing too
        return False


#: Migrations that only Conductor's releases before the app label became "conductor" recorded.
OLD_LABEL_MIGRATIONS = {"0002_db_use_lease", "0006_runner_degraded"}


@register(Tags.database)
def check_old_database(app_configs=None, databases=None, **kwargs) -> list:
    """A database made by a checkout from before the label was "conductor" (tables app_task, ...)."""
    if not databases or "default" not in databases:
        return []
    connection = connections["default"]
    if "django_migrations" not in connection.introspection.table_names():
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM django_migrations WHERE app = %s", ["app"])
        names = {row[0] for row in cursor.fetchall()}
    if not names >= OLD_LABEL_MIGRATIONS:
        return []
    name = connection.settings_dict["NAME"]
    fresh = f"delete {name}" if connection.vendor == "sqlite" else f"drop or rename the database {name}"
    return [
        _error(
            f"The database {name} was made by an older Conductor (tables app_task, app_taskrun, ...); "
            "this one uses conductor_task, conductor_taskrun, ...",
            f"Start from a new database: {fresh} (or point the settings, e.g. DATABASE_URL, at a new "
            "one), then run `manage.py migrate` again.",
            10,
        )
    ]


@register(Tags.database)
def check_clock_skew(app_configs=None, databases=None, **kwargs) -> list:
    """Live runners whose clock differs from the database's by more than CLOCK_SKEW_WARNING, as they
    measured it at their last heartbeat."""
    if not databases or "default" not in databases:
        return []
    from .runnerprocess import RunnerProcess  # models load after checks are registered

    raw = raw_settings()
    default = ConductorSettings.CLOCK_SKEW_WARNING
    limit = raw.get("CLOCK_SKEW_WARNING", default) if isinstance(raw, dict) else default
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
        return []  # conductor.E003 names the bad setting
    try:
        offsets = list(
            RunnerProcess.objects.live().filter(clock_offset__isnull=False).values_list("worker_id", "host",
                                                                                       "clock_offset")
        )  # fmt: skip
    except DatabaseError:  # not migrated yet: there are no runners to look at
        return []
    return [
        Warning(
            f"Runner {worker_id} on {host}: its clock is {abs(offset):.1f} s "
            f"{'behind' if offset > 0 else 'ahead of'} the database's (CLOCK_SKEW_WARNING is {limit:g} s).",
            hint="Conductor times everything by the database's clock, so tasks are safe, but fix the time "
            f"on {host}: run NTP (chrony, systemd-timesyncd).",
            id="conductor.W004",
        )
        for worker_id, host, offset in offsets
        if abs(offset) > limit
    ]


#: Keys copied from examples and placeholders (compared lower-case, without punctuation).
WELL_KNOWN_KEYS = {"changeme", "secret", "secretkey", "djangosecretkey", "yoursecretkey",
                   "yoursecretkeyhere", "pleasechangeme", "replaceme", "insecure", "password", "test",
                   "dev", "development", "notsecret", "xxx"}  # fmt: skip
#: Django's own thresholds for a key that resists guessing (security.W009, which only --deploy runs).
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_DISTINCT = 5
GENERATE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(50))'"


@register(Tags.security)
def check_secret_key(app_configs=None, **kwargs) -> list:
    """Anyone who knows or guesses SECRET_KEY can forge sessions, i.e. log in as any user. Not only under
    --deploy: the settings that start a server with DEBUG off are the ones that matter."""
    if settings.DEBUG:
        return []
    keys = {"SECRET_KEY": settings.SECRET_KEY}
    keys.update({f"SECRET_KEY_FALLBACKS[{i}]": key for i, key in enumerate(settings.SECRET_KEY_FALLBACKS)})
    return [
        Warning(
            f"{name} is {weakness}: anyone who guesses it can forge a login session.",
            hint=f"Generate one with {GENERATE_KEY} and set it as SECRET_KEY (in this repository's "
            "settings: the DJANGO_SECRET_KEY environment variable, the same on every machine).",
            id="conductor.W003",
        )
        for name, key in keys.items()
        if (weakness := secret_key_weakness(str(key)))
    ]


def secret_key_weakness(key: str) -> str:
    """What makes ``key`` guessable, or "" when nothing does; the most telling reason first."""
    if "".join(c for c in key.lower() if c.isalnum()) in WELL_KNOWN_KEYS:
        return "a well-known placeholder"
    if key.startswith("django-insecure-"):
        return "the insecure kind that startproject generates (prefixed 'django-insecure-')"
    if len(set(key)) < SECRET_KEY_MIN_DISTINCT:
        return f"made of fewer than {SECRET_KEY_MIN_DISTINCT} distinct characters"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"shorter than {SECRET_KEY_MIN_LENGTH} characters"
    return ""
