"""Octopus settings: one module, driven by the environment (django-environ).

Every variable is listed in `.env.example`. With no environment at all the project runs on
SQLite and the embedded Redis under `var/` (see `octopus/embedded_redis.py`). A value that
cannot be used stops start-up with `ImproperlyConfigured` naming the variable; `manage.py`
prints that as one line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="")
    if raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected true/false, got {raw!r}")


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


DEBUG = _bool("DEBUG", False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY: must be set when DEBUG is off (make run sets one up for you)"
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "channels",
    "django_celery_beat",
    "octopus",
    "plugins_app",
    "tasks_app",
    "schedules_app",
    "accounts_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "octopus.urls"
WSGI_APPLICATION = "octopus.wsgi.application"
ASGI_APPLICATION = "octopus.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
_database_url = env.str("DATABASE_URL", default="")
if _database_url:
    try:
        _db = environ.Env.db_url_config(_database_url)
    except Exception as exc:  # django-environ raises several kinds for a bad URL
        raise ImproperlyConfigured(
            f"DATABASE_URL: cannot parse {_database_url!r} ({exc})"
        ) from None
    if _db.get("ENGINE") not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL: {_database_url!r} is not a postgres:// or sqlite:// URL"
        )
else:
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "octopus.sqlite3")}

# Lets two test runs on one machine keep apart (their own test database and embedded Redis).
TEST_RUN_SUFFIX = env.str("OCTOPUS_TEST_SUFFIX", default="")
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a real worker process in the tests sees the same data.
    _db.setdefault("TEST", {})["NAME"] = str(VAR_DIR / f"test-octopus{TEST_RUN_SUFFIX}.sqlite3")
    # WAL lets the web process read while a worker writes log batches.
    _db.setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
elif TEST_RUN_SUFFIX:
    _db.setdefault("TEST", {})["NAME"] = f"test_{_db['NAME']}{TEST_RUN_SUFFIX}"
# Connections are kept between requests and between a worker's runs (octopus/celery.py): a
# new one costs milliseconds on the dispatch path, and more on PostgreSQL.
_db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
_db.setdefault("CONN_HEALTH_CHECKS", True)
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, result backend, channel layer --------------------------------------------
EMBEDDED_REDIS_DIR = VAR_DIR / "redis"
EMBEDDED_REDIS_SOCKET = EMBEDDED_REDIS_DIR / "redis.sock"
REDIS_URL = env.str("REDIS_URL", default="") or f"unix://{EMBEDDED_REDIS_SOCKET}?db=0"
REDIS_IS_EMBEDDED = REDIS_URL.startswith(f"unix://{VAR_DIR}/")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL: expected redis://, rediss:// or unix://, got {REDIS_URL!r}"
    )


def _celery_redis_url(url: str) -> str:
    # kombu and the Celery result backend spell a unix socket "redis+socket://".
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


CELERY_BROKER_URL = _celery_redis_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_redis_url(REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A run can be long; the broker must not redeliver it to another worker while it is running.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 12 * 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Celery's Django fixup closes every database connection before and after each task unless
# this is set; a new PostgreSQL connection costs ~8 ms, most of a run's dispatch time. Workers
# keep theirs and apply CONN_MAX_AGE / CONN_HEALTH_CHECKS around each task as a web request
# does (octopus/celery.py); this only bounds how many tasks one connection may serve.
CELERY_DB_REUSE_MAX = 10_000

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL}],
            # The default of 100 drops messages silently when a slow socket falls behind.
            "capacity": _int("CHANNEL_LAYER_CAPACITY", 2000, minimum=100),
            "expiry": 60,
        },
    }
}

# --- Octopus ---------------------------------------------------------------------------------
PLUGINS_FOLDER = Path(env.str("PLUGINS_FOLDER", default=str(BASE_DIR / "plugins"))).resolve()
PLUGINS_AUTO_ACTIVATE = _bool("PLUGINS_AUTO_ACTIVATE", False)
WORKER_HEARTBEAT_SECONDS = _int("WORKER_HEARTBEAT_SECONDS", 5, minimum=1)

# Running plugins (tasks_app/runner.py). Seconds unless named otherwise.
# Time limit for plugins without a module-level TIMEOUT; 0 = none.
TASK_DEFAULT_TIMEOUT = _int("TASK_DEFAULT_TIMEOUT", 3600, minimum=0)
# After the soft time limit (the plugin gets an exception) and after a cancel request, how
# long a plugin has to stop before its process is killed.
TASK_TIME_LIMIT_GRACE_SECONDS = _int("TASK_TIME_LIMIT_GRACE_SECONDS", 10, minimum=1)
TASK_CANCEL_GRACE_SECONDS = _int("TASK_CANCEL_GRACE_SECONDS", 10, minimum=1)
# A running task's heartbeat; the reaper fails RUNNING tasks silent for TASK_LOST_AFTER_SECONDS.
TASK_HEARTBEAT_SECONDS = _int("TASK_HEARTBEAT_SECONDS", 10, minimum=1)
TASK_LOST_AFTER_SECONDS = _int("TASK_LOST_AFTER_SECONDS", 60, minimum=2)
# The reaper runs in the beat process (not on a worker: it has to work with none alive).
TASK_REAP_INTERVAL_SECONDS = _int("TASK_REAP_INTERVAL_SECONDS", 30, minimum=1)
# The same pass enqueues again PENDING tasks older than this whose broker message is gone.
TASK_REQUEUE_AFTER_SECONDS = _int("TASK_REQUEUE_AFTER_SECONDS", 120, minimum=1)
# The daily cleanup deletes finished tasks older than this many days; 0 = keep forever.
TASK_RETENTION_DAYS = _int("TASK_RETENTION_DAYS", 30, minimum=0)
# Log lines a plugin may have in memory before its log call waits (backpressure).
LOG_BUFFER_MAX_LINES = _int("LOG_BUFFER_MAX_LINES", 10000, minimum=100)
# A batch of log lines is written every LOG_FLUSH_MAX_LINES lines or LOG_FLUSH_INTERVAL_MS.
# The interval bounds how late a quiet plugin's line reaches a live page (p95 target 250 ms,
# docs/benchmarks.md); a busy plugin fills LOG_FLUSH_MAX_LINES first.
LOG_FLUSH_MAX_LINES = _int("LOG_FLUSH_MAX_LINES", 5000, minimum=1)
LOG_FLUSH_INTERVAL_MS = _int("LOG_FLUSH_INTERVAL_MS", 100, minimum=10)
CELERY_BEAT_SCHEDULE = {
    "octopus-cleanup-old-tasks": {
        "task": "tasks_app.cleanup_old_tasks",
        "schedule": 24 * 3600.0,
    },
}

# --- Auth, i18n, static ------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# After `collectstatic` (the Docker image) files are served hashed and compressed; without it
# (make run, tests) WhiteNoise serves them straight from the app folders.
_COLLECTED = (STATIC_ROOT / "staticfiles.json").exists()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if _COLLECTED
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not _COLLECTED
if not _COLLECTED:
    warnings.filterwarnings("ignore", message="No directory at")

# --- Security (check --deploy clean when DEBUG is off) -----------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", True)
    SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Load balancers and the compose healthcheck probe over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
