"""Django settings for Conductor.

One settings file serves the embedded default (a SQLite file in WAL mode and the in-memory channel layer)
and scale-out (``DATABASE_URL`` for PostgreSQL, ``REDIS_URL`` for channels-redis). Everything that
differs between machines comes from the environment.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

from app import sqlite_options
from app.privatefiles import create_empty, create_once

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CONDUCTOR_VAR_DIR", BASE_DIR / "var"))


def _secret_key() -> str:
    """The key from the environment, else one generated once per checkout (0600, kept out of git)."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"  # var/ is created 0700 when missing
    if not (key := create_once(path, secrets.token_urlsafe(50)).strip()):
        raise RuntimeError(f"{path} is empty: delete it, and the next start generates a new key.")
    return key


SECRET_KEY = _secret_key()
# DEBUG pages show tracebacks and settings to whoever connects: make run turns it on only for a loopback
# ADDR, and runtasks --serve refuses any other address while it is on.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
# Behind a TLS-terminating proxy: the origins browsers post from, and the header the proxy sets.
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
if os.environ.get("DJANGO_BEHIND_TLS_PROXY") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    # Browsers then refuse plain HTTP to this host (and its subdomains) for a year. Preloading is a
    # promise for the whole domain, left to its owner; the proxy redirects HTTP to HTTPS (docs/deploy.md).
    SECURE_HSTS_SECONDS = 365 * 24 * 3600
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True

INSTALLED_APPS = [
    # Before staticfiles, so that its ASGI runserver wins; this config imports Twisted only when serving.
    "app.apps.DaphneCommandsConfig",
    "app.adminsite.ConductorAdminConfig",  # Django's admin with Conductor's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "app",
    "server.demo",  # the demo project's task functions and `manage.py loaddemo` (never in the package)
]

MIDDLEWARE = [
    # First: /health answers probes that send an IP as Host (docs/deploy.md, Metrics and health).
    "app.health.AnswerProbesByAnyHost",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "server.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "server.asgi.application"


def database_from_env() -> dict:
    default_path = VAR_DIR / "conductor.sqlite3"
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{default_path}"
    config = dj_database_url.parse(url, conn_max_age=0)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        if _is_file(config["NAME"]):
            create_empty(Path(config["NAME"]))  # 0600 before SQLite makes it: sessions, password hashes
        config["OPTIONS"] = {**sqlite_options(), **config.get("OPTIONS", {})}
        # Tests get a real file beside the database, never an in-memory one.
        config["TEST"] = {"NAME": str(Path(config["NAME"]).with_suffix(".test.sqlite3"))}
    return config


def _is_file(name: str) -> bool:
    return name != ":memory:" and not name.startswith("file:")


DATABASES = {"default": database_from_env()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if redis_url := os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # A prefix of its own lets several Conductors (or test runs) share one Redis.
            "CONFIG": {
                # No read timeout: channels-redis waits on Redis longer than redis-py 8's default 5 s.
                "hosts": [{"address": redis_url, "socket_timeout": None}],
                "prefix": os.environ.get("CHANNELS_PREFIX", "conductor"),
                # Room for bursts: a page that misses events resyncs from a snapshot anyway.
                "capacity": 1000,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        "conductor": {
            "handlers": ["console"],
            "level": os.environ.get("CONDUCTOR_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
    },
    # Task functions' own loggers: INFO reaches the console and each run's captured log.
    "root": {"handlers": ["console"], "level": "INFO"},
}

# Conductor's own settings (app/conf.py documents each one and its default). Any of them can also come
# from the environment as CONDUCTOR_<NAME>, in any project: this repository sets none here.
CONDUCTOR: dict = {}

# Django's tasks framework (django.tasks) on Conductor: an @task function's enqueue() saves a Conductor
# Task that runtasks runs (docs/django-tasks.md). QUEUES [] accepts any queue name; `runtasks --queue`
# chooses which queues a runner serves. OPTIONS may set Conductor's task options as defaults.
TASKS = {"default": {"BACKEND": "app.backends.ConductorBackend", "QUEUES": []}}
