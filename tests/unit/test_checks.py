"""Tests for app.checks: bad Conductor settings and SQLite options are reported with a hint."""

import math
import sys

import pytest
from django.core.checks import Error, Warning
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from app import checks
from app.checks import (
    check_old_database,
    check_project_wiring,
    check_secret_key,
    check_settings,
    check_sqlite_wal,
)


async def PLAIN_DJANGO(scope, receive, send):
    raise AssertionError("never called: the checks only look at how applications are wired")


BAD_SETTINGS = [
    # (id, CONDUCTOR, check id, fragment of the message)
    ("not-a-dict", ["THREADS", 8], "conductor.E001", "CONDUCTOR must be a dict"),
    ("unknown-key", {"THREAD": 8}, "conductor.E002", "unknown key 'THREAD'"),
    ("threads-0", {"THREADS": 0}, "conductor.E003", "CONDUCTOR['THREADS'] is 0"),
    ("threads-text", {"THREADS": "8"}, "conductor.E003", "CONDUCTOR['THREADS'] is '8'"),
    ("threads-bool", {"THREADS": True}, "conductor.E003", "CONDUCTOR['THREADS'] is True"),
    ("threads-float", {"THREADS": 8.0}, "conductor.E003", "positive whole number"),
    ("poll-negative", {"POLL": -1}, "conductor.E003", "CONDUCTOR['POLL'] is -1"),
    ("poll-0", {"POLL": 0}, "conductor.E003", "CONDUCTOR['POLL'] is 0"),
    ("log-limit-0", {"LOG_LIMIT": 0}, "conductor.E003", "CONDUCTOR['LOG_LIMIT'] is 0"),
    ("grace-negative", {"GRACE": -1}, "conductor.E003", "CONDUCTOR['GRACE'] is -1"),
    ("grace-text", {"GRACE": "10"}, "conductor.E003", "CONDUCTOR['GRACE'] is '10'"),
    ("history-0", {"HISTORY_RETENTION": 0}, "conductor.E003", "CONDUCTOR['HISTORY_RETENTION'] is 0"),
    ("history-short", {"HISTORY_RETENTION": 600}, "conductor.E011", "(600 s) is shorter than the hour"),
    ("task-modules-str", {"TASK_MODULES": "a.b"}, "conductor.E004", "list of dotted module"),
    ("task-modules-items", {"TASK_MODULES": [1]}, "conductor.E004", "list of dotted module"),
    (
        "heartbeat-timeout-short",
        {"HEARTBEAT": 2, "HEARTBEAT_TIMEOUT": 5.9},
        "conductor.E006",
        "less than three heartbeats",
    ),
]

NON_FINITE = [
    pytest.param(
        {key: value}, "conductor.E003", f"CONDUCTOR[{key!r}] is {value!r}", id=f"{key.lower()}-{value}"
    )
    for key in ("POLL", "HEARTBEAT", "HEARTBEAT_TIMEOUT", "INTERRUPT_WAIT")
    for value in (math.nan, math.inf)
]

GRACE_NOT_FINITE = [
    pytest.param(
        {"GRACE": value},
        "conductor.E003",
        f"CONDUCTOR['GRACE'] is {value!r}",
        id=f"grace-{value}",
    )
    for value in (math.nan, math.inf)
]


@pytest.mark.parametrize(
    ("conductor", "check_id", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_SETTINGS] + NON_FINITE + GRACE_NOT_FINITE,
)
def test_bad_setting_is_an_error_with_an_id_and_a_hint(conductor, check_id, fragment):
    with override_settings(CONDUCTOR=conductor):
        errors = check_settings()

    assert [error.id for error in errors] == [check_id]
    [error] = errors
    assert isinstance(error, Error)
    assert fragment in error.msg
    assert error.hint


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [("CONDUCTOR_THREADS", "abc", "CONDUCTOR_THREADS (in the environment) is 'abc'"),
     ("CONDUCTOR_GRACE", "-1", "CONDUCTOR_GRACE (in the environment) is -1"),
     ("CONDUCTOR_HEARTBEAT_TIMEOUT", "1", "CONDUCTOR_HEARTBEAT_TIMEOUT (in the environment) (1)")],
)  # fmt: skip
def test_a_bad_value_from_the_environment_is_named_as_the_variable(monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with override_settings(CONDUCTOR={}):
        [error] = check_settings()

    assert fragment in error.msg
    assert "CONDUCTOR[" not in error.msg + error.hint  # a dict the user never wrote


def test_a_key_in_the_dict_wins_over_the_environment_and_is_named_as_such(monkeypatch):
    monkeypatch.setenv("CONDUCTOR_THREADS", "4")
    with override_settings(CONDUCTOR={"THREADS": 0}):
        [error] = check_settings()

    assert "CONDUCTOR['THREADS'] is 0" in error.msg


def test_unknown_key_hint_lists_the_known_keys():
    with override_settings(CONDUCTOR={"THREAD": 8}):
        [error] = check_settings()

    assert "THREADS" in error.hint
    assert "TASK_MODULES" in error.hint


def test_number_hint_names_the_default():
    with override_settings(CONDUCTOR={"THREADS": 0}):
        [error] = check_settings()

    assert "default (8)" in error.hint


def test_every_bad_value_is_reported_at_once():
    with override_settings(CONDUCTOR={"THREADS": 0, "POLL": -1, "NOPE": 1, "TASK_MODULES": "x"}):
        errors = check_settings()

    assert sorted(error.id for error in errors) == [
        "conductor.E002",
        "conductor.E003",
        "conductor.E003",
        "conductor.E004",
    ]


@pytest.mark.parametrize(
    "conductor",
    [
        {},
        {
            "TASK_MODULES": ["tests.functions"],
            "THREADS": 4,
            "POLL": 0.5,
            "HEARTBEAT": 1,
            "HEARTBEAT_TIMEOUT": 3,
            "GRACE": 0,
            "INTERRUPT_WAIT": 0.1,
            "LOG_LIMIT": 100,
            "EVENT_QUEUE_SIZE": 1,
            "HISTORY_RETENTION": 3600,
        },
        {"TASK_MODULES": ("tests.functions",), "GRACE": 2.5},
    ],
)
def test_good_settings_give_no_errors(conductor):
    with override_settings(CONDUCTOR=conductor):
        assert check_settings() == []


def test_the_project_settings_pass():
    assert check_settings() == []


def test_manage_py_check_fails_on_a_bad_setting():
    with override_settings(CONDUCTOR={"THREADS": 0}), pytest.raises(SystemCheckError) as caught:
        call_command("check", tag=["compatibility"])

    assert "conductor.E003" in str(caught.value)


# --- check_sqlite_wal ----------------------------------------------------------------------------


SQLITE = "django.db.backends.sqlite3"
ON_SQLITE = connections.databases["default"]["ENGINE"] == SQLITE
sqlite_only = pytest.mark.skipif(not ON_SQLITE, reason="the test database is not SQLite")


def test_test_database_passes_the_check():
    assert check_sqlite_wal() == []


@sqlite_only
def test_test_database_is_set_up_for_concurrent_runners():
    options = connections.databases["default"]["OPTIONS"]

    assert "journal_mode=wal" in options["init_command"].lower().replace(" ", "")
    assert options["transaction_mode"] == "IMMEDIATE"


@sqlite_only
@pytest.mark.django_db
def test_test_database_really_runs_in_wal_mode():
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0].lower() == "wal"


@pytest.fixture
def database_config(monkeypatch):
    """Replace the default database's ENGINE and OPTIONS for one test (no connection is opened
    meanwhile), whichever database the tests run on."""
    config = connections.databases["default"]

    def use(options: dict, engine: str = SQLITE) -> None:
        monkeypatch.setitem(config, "ENGINE", engine)
        monkeypatch.setitem(config, "OPTIONS", options)

    return use


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            {"transaction_mode": "IMMEDIATE"},
            "init_command does not set PRAGMA journal_mode=WAL",
        ),
        (
            {"init_command": "PRAGMA journal_mode = wal;"},
            'transaction_mode is not "IMMEDIATE"',
        ),
        (
            {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "DEFERRED"},
            'transaction_mode is not "IMMEDIATE"',
        ),
    ],
)
def test_sqlite_without_wal_or_immediate_is_a_warning(database_config, options, problem):
    database_config(options)

    [warning] = check_sqlite_wal()

    assert isinstance(warning, Warning)
    assert warning.id == "conductor.W001"
    assert problem in warning.msg
    assert "sqlite_options()" in warning.hint


def test_sqlite_set_up_for_concurrent_runners_gives_no_warning(database_config):
    database_config({"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "immediate"})

    assert check_sqlite_wal() == []


def test_other_databases_are_not_checked_for_sqlite_options(database_config):
    database_config({}, engine="django.db.backends.postgresql")

    assert check_sqlite_wal() == []


# A project's wiring (conductor.E007-E010, W002): what docs/install.md asks a project to add ----------


def wiring_ids() -> set[str]:
    return {message.id for message in check_project_wiring()}


def test_a_project_without_channels_is_told_to_add_it(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "channels"]

    [error] = [m for m in check_project_wiring() if m.id == "conductor.E007"]
    assert 'Add "channels" to INSTALLED_APPS' in error.hint


def test_a_redis_layer_without_channels_redis_names_the_extra(settings, monkeypatch):
    monkeypatch.setattr(checks, "_channels_redis_installed", lambda: False)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}

    [error] = [m for m in check_project_wiring() if m.id == "conductor.E008"]
    assert "django-conductor[redis]" in error.hint


def test_redis_url_without_channels_redis_is_a_warning(settings, monkeypatch):
    monkeypatch.setattr(checks, "_channels_redis_installed", lambda: False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

    [warning] = [m for m in check_project_wiring() if m.id == "conductor.W002"]
    assert isinstance(warning, Warning)


def test_this_projects_asgi_application_routes_the_dashboard_socket():
    assert wiring_ids() == set()


def test_an_asgi_application_without_the_dashboard_socket_is_an_error(settings):
    settings.ASGI_APPLICATION = "tests.unit.test_checks.PLAIN_DJANGO"

    [error] = [m for m in check_project_wiring() if m.id == "conductor.E009"]
    assert "with_conductor" in error.hint


def test_an_asgi_application_that_cannot_be_imported_is_named(settings):
    settings.ASGI_APPLICATION = "tests.unit.no_such_module.application"

    [error] = [m for m in check_project_wiring() if m.id == "conductor.E009"]
    assert "could not be loaded" in error.msg


def a_project(root, asgi: str | None) -> str:
    """A package ``userproject`` in ``root`` with the asgi.py given (None: none), as startproject makes."""
    package = root / "userproject"
    package.mkdir()
    (package / "__init__.py").write_text("")
    if asgi is not None:
        (package / "asgi.py").write_text(asgi)
    return "userproject.wsgi.application"


PLAIN_ASGI = "async def application(scope, receive, send):\n    pass\n"


@pytest.fixture
def no_asgi_application(settings, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "userproject", raising=False)
    monkeypatch.delitem(sys.modules, "userproject.asgi", raising=False)
    settings.ASGI_APPLICATION = None
    return settings


def test_without_asgi_application_the_asgi_py_beside_wsgi_py_is_checked(no_asgi_application, tmp_path):
    no_asgi_application.WSGI_APPLICATION = a_project(tmp_path, PLAIN_ASGI)

    [warning] = [m for m in check_project_wiring() if m.id == "conductor.W005"]
    assert isinstance(warning, Warning)
    assert "userproject.asgi.application" in warning.msg
    assert "userproject/asgi.py" in warning.hint
    assert "application = with_conductor(application)" in warning.hint


def test_an_asgi_py_with_the_route_or_none_at_all_passes(no_asgi_application, tmp_path):
    routed = "from django.core.asgi import get_asgi_application\nfrom app.asgi import with_conductor\n"
    routed += "application = with_conductor(get_asgi_application())\n"
    no_asgi_application.WSGI_APPLICATION = a_project(tmp_path, routed)
    assert wiring_ids() == set()
    no_asgi_application.WSGI_APPLICATION = "no_such_project.wsgi.application"
    assert wiring_ids() == set()


def test_an_asgi_py_that_fails_to_load_is_named(no_asgi_application, tmp_path):
    no_asgi_application.WSGI_APPLICATION = a_project(tmp_path, "raise RuntimeError('broken asgi')\n")

    [warning] = [m for m in check_project_wiring() if m.id == "conductor.W005"]
    assert "broken asgi" in warning.msg


@pytest.mark.parametrize(
    ("wsgi", "asgi"),
    [("mysite.wsgi.application", "mysite.asgi.application"), ("a.b.wsgi.app", "a.b.asgi.application"),
     ("wsgi.application", "asgi.application"), (None, None), ("", None)],
)  # fmt: skip
def test_the_conventional_asgi_path_is_the_wsgi_modules_sibling(settings, wsgi, asgi):
    settings.WSGI_APPLICATION = wsgi
    assert checks.conventional_asgi_path() == asgi


def test_the_walk_finds_the_consumer_behind_middleware_and_routers():
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.urls import path

    from app.asgi import routes_dashboard_socket, websocket_application
    from app.routing import websocket_urlpatterns

    own = URLRouter([path("ws/chat/", PLAIN_DJANGO), *websocket_urlpatterns])
    assert routes_dashboard_socket(ProtocolTypeRouter({"websocket": AuthMiddlewareStack(own)}))
    assert routes_dashboard_socket(websocket_application())
    assert not routes_dashboard_socket(ProtocolTypeRouter({"http": PLAIN_DJANGO}))


@pytest.mark.django_db
def test_a_database_of_an_older_conductor_is_named_with_the_way_out():
    with connection.cursor() as cursor:
        for name in ("0001_initial", *checks.OLD_LABEL_MIGRATIONS):
            cursor.execute(
                "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
                ["app", name, timezone.now()],
            )

    [error] = check_old_database(databases=["default"])

    assert error.id == "conductor.E010"
    assert "Start from a new database" in error.hint


@pytest.mark.django_db
def test_a_users_own_app_labelled_app_is_not_taken_for_an_old_conductor():
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
            ["app", "0001_initial", timezone.now()],
        )

    assert check_old_database(databases=["default"]) == []


# --- check_secret_key: a guessable SECRET_KEY forges logins ---------------------------------------

STRONG_KEY = "pX3v9Qe_Lr2TzW8yKc5bN1mJf7Hd4Gs6Ua0Ro-Ei2YtVw9Zq3Xl8Mn5Bk1Cj7Fh4Dg"

WEAK_KEYS = [
    # (id, key, what the warning calls it)
    ("deploy-doc-placeholder", "CHANGE-ME", "a well-known placeholder"),
    ("changeme", "changeme", "a well-known placeholder"),
    ("secret", "secret", "a well-known placeholder"),
    ("secret-key-spaced", " Secret_Key ", "a well-known placeholder"),
    ("startproject", "django-insecure-" + STRONG_KEY, "prefixed 'django-insecure-'"),
    ("few-distinct", "ab" * 40, "fewer than 5 distinct characters"),
    ("short-but-random", STRONG_KEY[:49], "shorter than 50 characters"),
]


@pytest.mark.parametrize(("key", "weakness"), [pytest.param(*case[1:], id=case[0]) for case in WEAK_KEYS])
def test_a_weak_secret_key_is_a_warning_saying_how_to_make_one(settings, key, weakness):
    settings.DEBUG = False
    settings.SECRET_KEY = key

    [warning] = check_secret_key()

    assert isinstance(warning, Warning)
    assert warning.id == "conductor.W003"
    assert warning.msg.startswith("SECRET_KEY is ")
    assert weakness in warning.msg
    assert "secrets.token_urlsafe(50)" in warning.hint
    assert "DJANGO_SECRET_KEY" in warning.hint


@pytest.mark.parametrize("key", [case[1] for case in WEAK_KEYS])
def test_a_weak_key_is_not_reported_with_debug_on(settings, key):
    settings.DEBUG = True
    settings.SECRET_KEY = key

    assert check_secret_key() == []


@pytest.mark.parametrize("key", ["django-insecure-" + STRONG_KEY, STRONG_KEY[:49]])
def test_the_warning_never_repeats_the_key_into_logs(settings, key):
    settings.DEBUG = False
    settings.SECRET_KEY = key

    [warning] = check_secret_key()

    assert STRONG_KEY[:20] not in warning.msg + warning.hint


def test_a_strong_key_is_not_reported(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = STRONG_KEY

    assert check_secret_key() == []


def test_the_generated_key_of_this_checkout_is_strong(settings):
    settings.DEBUG = False

    assert check_secret_key() == []


def test_a_weak_fallback_key_is_reported_too(settings):
    """Signatures made with any fallback key are still accepted: a guessable one forges logins as well."""
    settings.DEBUG = False
    settings.SECRET_KEY = STRONG_KEY
    settings.SECRET_KEY_FALLBACKS = [STRONG_KEY[::-1], "changeme"]

    [warning] = check_secret_key()

    assert warning.msg.startswith("SECRET_KEY_FALLBACKS[1] is a well-known placeholder")


def test_manage_py_check_shows_the_weak_key_warning(settings, capsys):
    settings.DEBUG = False
    settings.SECRET_KEY = "CHANGE-ME"

    with pytest.raises(SystemCheckError) as caught:
        call_command("check", tag=["security"], fail_level="WARNING")

    assert "(conductor.W003) SECRET_KEY is a well-known placeholder" in str(caught.value)


@pytest.mark.django_db
def test_live_runners_whose_clock_is_skewed_are_warned_about():
    from app.runnerprocess import RunnerProcess
    from app.status import RunnerState

    runners = [("fast", -30.0, RunnerState.RUNNING), ("fine", 0.4, RunnerState.RUNNING),
               ("gone", 30.0, RunnerState.DEAD), ("new", None, RunnerState.RUNNING)]  # fmt: skip
    for name, offset, state in runners:
        RunnerProcess.objects.create(worker_id=name, host="h", pid=1, state=state, clock_offset=offset)

    warnings = checks.check_clock_skew(databases=["default"])

    assert [(w.id, w.msg) for w in warnings] == [
        ("conductor.W004", "Runner fast on h: its clock is 30.0 s ahead of the database's "
                           "(CLOCK_SKEW_WARNING is 2 s).")
    ]  # fmt: skip
    with override_settings(CONDUCTOR={"CLOCK_SKEW_WARNING": 60}):
        assert checks.check_clock_skew(databases=["default"]) == []
    assert checks.check_clock_skew(databases=None) == []


def test_a_bad_clock_skew_limit_is_an_error():
    with override_settings(CONDUCTOR={"CLOCK_SKEW_WARNING": -1}):
        assert [e.id for e in check_settings()] == ["conductor.E003"]
