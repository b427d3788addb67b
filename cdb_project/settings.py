"""Settings, 12-factor: everything comes from the environment (django-environ).

With nothing set the system runs embedded: SQLite, Celery tasks run in-process
(eager), the in-memory Channels layer and no Redis. Setting ``REDIS_URL`` switches
to real Celery workers, the channels-redis layer and Redis pub/sub; setting
``DATABASE_URL`` to ``postgres://…`` switches the store.

Any variable can be read from a file instead: ``NAME_FILE=/run/secrets/name`` (django-environ's FileAwareEnv; compose
hands each container only the secrets it uses that way). The database and Redis passwords may stay out of the URLs:
``DATABASE_PASSWORD`` and ``REDIS_PASSWORD`` are added to a URL that carries none.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import environ
from csp.constants import NONE, SELF

from risk.parameters import seed_from_env

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()  # NAME_FILE (a Docker secret's path) wins over NAME
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")


def _secret(name: str) -> str:
    """A secret from NAME or NAME_FILE; a file's trailing newline is not part of it."""
    return env.str(name, default="").strip()


DEBUG = env.bool("DEBUG", default=False)


def _local_secret_key() -> str:
    """A key kept beside the checkout (git-ignored) so sessions survive restarts when SECRET_KEY is unset."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret("SECRET_KEY") or _local_secret_key()
PLACEHOLDER_KEYS = {"change-me", "changeme", "secret", "secret-key", "please-change-me", "xxx"}
if not DEBUG and (
    SECRET_KEY.lower() in PLACEHOLDER_KEYS
    or len(SECRET_KEY) < 50
    or len(set(SECRET_KEY)) < 5
    or SECRET_KEY.startswith("django-insecure")
):
    # Sessions, CSRF tokens and the signed strategy cache all rest on it: refuse to run rather than sign with
    # a value everybody has (the .env.example placeholder) or one short enough to guess.
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "SECRET_KEY is a placeholder or too short (at least 50 characters, 5 different ones): generate one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))' (or unset it: a key is kept in .secret_key)"
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "cdb_project.devserver",  # daphne's runserver, imported only when it runs (not "daphne": see its docstring)
    "cdb_project.admin_app.AdminConfig",  # django.contrib.admin; the admin.py modules loaded where used
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "axes",
    "csp",
    "ground",
    "marketdata",
    "trading",
    "risk",
    "execution",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ground.refusals.PlainRefusalMiddleware",  # a 403 is one log line, not a traceback
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login (django-axes)
]

ROOT_URLCONF = "cdb_project.urls"
ASGI_APPLICATION = "cdb_project.asgi.application"

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

# --- Store -----------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if not DATABASES["default"].get("PASSWORD"):  # compose: postgres://cdb@cdb_postgres:5432/cdb + the password's secret
    DATABASES["default"]["PASSWORD"] = _secret("DATABASE_PASSWORD")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The feed, the web server and eager tasks share one file: wait for the lock instead of failing. IMMEDIATE: a
    # transaction takes the write lock when it begins; a deferred one that reads, then writes while another thread
    # holds the write lock is refused at once ("database is locked") to avoid a deadlock, and it stopped the feed.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=20, transaction_mode="IMMEDIATE")
else:
    # The web process (cdb_project.asgi sets CDB_PROCESS=web) closes its connection after every request: daphne
    # runs each request's database work in a thread of its own, and persistent connections would pile up one per
    # thread until PostgreSQL refuses new clients — and the kill switch with them. Workers and the feed keep theirs.
    PROCESS_ROLE = env.str("CDB_PROCESS", default="")
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0 if PROCESS_ROLE == "web" else 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("application_name", f"cdb-{PROCESS_ROLE or 'process'}")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, Celery, Channels -------------------------------------------------


def _with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in it, unless it has one already (or there is none to add)."""
    parts = urlsplit(url)
    if not url or not password or parts.password:
        return url
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"))


REDIS_URL = _with_password(env.str("REDIS_URL", default=""), _secret("REDIS_PASSWORD"))
EMBEDDED = not REDIS_URL

CELERY_TASK_ALWAYS_EAGER = EMBEDDED
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"  # embedded: tasks run eagerly; named host, no kombu warning
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_RETRY = True  # a worker that loses Redis reconnects with backoff (2 s, 4 s, … 30 s)
# Enqueueing a task while Redis is down: retry with backoff (0.1 s, 0.6 s, … then every 5 s) for about
# BROKER_RETRY_SECONDS before giving up. The event is already stored (persist before publish), so the publisher
# and the workers simply wait for Redis; see ground/bus.py and cdb_project/recovery.py.
BROKER_RETRY_SECONDS = env.float("BROKER_RETRY_SECONDS", default=300.0)
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 10 + max(0, int((BROKER_RETRY_SECONDS - 25) / 5)),
    "interval_start": 0.1,
    "interval_step": 0.5,
    "interval_max": 5.0,
}
# An unacknowledged task (worker killed mid-task) is redelivered after this many seconds.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300)}
CELERY_TIMEZONE = "UTC"
# Celery's Django fix-up closes the database connection before and after every task unless this is set; a new
# PostgreSQL session per task cost more than the task's own queries. Workers close connections as Django's request
# cycle does instead, by CONN_MAX_AGE and the health check (cdb_project.ops: task_prerun / task_postrun).
CELERY_DB_REUSE_MAX = 1_000_000

if EMBEDDED:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, the same as channels-redis' 5 s BZPOPMIN:
            # an idle dashboard socket then died every ~6 s ("Timeout reading"). The read waits longer than the pop.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }

# --- Caches: the strategy-state store (trading/signal_service.py) -------------------------------------------------
# Django's cache framework. With Redis, a database of its own shared by every worker: STRATEGY_CACHE_URL, by default
# REDIS_URL's server with database 1. Its values are bytes their writer signed (HMAC of SECRET_KEY), stored as they
# are: the cache never unpickles what it reads. Embedded (no Redis): local memory in the process.
STRATEGY_CACHE_URL = _with_password(env.str("STRATEGY_CACHE_URL", default=""), _secret("REDIS_PASSWORD"))
if not STRATEGY_CACHE_URL and REDIS_URL:
    STRATEGY_CACHE_URL = urlunsplit(urlsplit(REDIS_URL)._replace(path="/1"))
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cdb-default"}}
if STRATEGY_CACHE_URL:
    CACHES["strategy_state"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": STRATEGY_CACHE_URL,
        "OPTIONS": {
            "serializer": "ground.redis_client.BytesAsTheyAre",
            "socket_timeout": 2.0,
            "socket_connect_timeout": 2.0,
        },
    }
else:
    CACHES["strategy_state"] = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "cdb-strategy-state",
        "OPTIONS": {"MAX_ENTRIES": 5000},
    }

# --- Trading -----------------------------------------------------------------
RISK_PARAMETER_SEEDS = seed_from_env(os.environ)
for _seed in RISK_PARAMETER_SEEDS.values():
    if _seed.warning:
        logging.getLogger("cdb.settings").warning(_seed.warning)

STRATEGY = env.str("STRATEGY", default="momentum")  # name or "name:param=value,…" (trading/strategies)
INITIAL_CAPITAL = env.str("INITIAL_CAPITAL", default="10000")
POSITION_SIZE_PCT = env.str("POSITION_SIZE_PCT", default="0.10")
SYMBOL_WHITELIST = env.list("SYMBOL_WHITELIST", default=[])
INTERVAL = env.str("INTERVAL", default="1m")
PAPER_SLIPPAGE_PCT = env.str("PAPER_SLIPPAGE_PCT", default="0.0005")
FEE_RATE = env.str("FEE_RATE", default="0.001")
PAPER_FAILURE_RATE = env.str("PAPER_FAILURE_RATE", default="0.05")
PAPER_SEED = env.int("PAPER_SEED", default=42)
PAPER_MAX_VOLUME_SHARE = env.str("PAPER_MAX_VOLUME_SHARE", default="0.25")  # 0 turns partial fills off
PENDING_ORDER_TIMEOUT_SEC = env.int("PENDING_ORDER_TIMEOUT_SEC", default=60)
DASHBOARD_GROUP = "dashboard"

# --- HTTPS (production behind a TLS proxy: HTTPS=true turns every setting below on; each one can be set alone) ---
HTTPS = env.bool("HTTPS", default=False)
if env.bool("SECURE_PROXY_SSL", default=HTTPS):  # the proxy says the original scheme in X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^metrics$"]  # probes and Prometheus inside the compose network
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=HTTPS)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Request bodies: daphne answers 413 beyond this many bytes without keeping them (cdb_project/daphne_request.py); Django
# refuses the same figure when it reads a body itself. Nothing here takes uploads: halts, parameters, logins, forms.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Content-Security-Policy (django-csp): scripts, styles, fonts and connections from this origin only — the
# dashboard, the charts (lightweight-charts from static), the admin and Swagger UI (drf-spectacular-sidecar) have no
# inline script or style. img-src allows data: for Swagger UI's icons. CSP_REPORT_ONLY=true only reports violations.
# The one inline style allowed, by its hash: the <style> lightweight-charts adds for its TradingView attribution logo
# (its licence asks for the attribution; tests/e2e/test_settings_security.py checks the hash against the installed
# file).
LIGHTWEIGHT_CHARTS_LOGO_STYLE = "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"
_CSP = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, LIGHTWEIGHT_CHARTS_LOGO_STYLE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],  # 'self' covers the same host's ws:// and wss:// (the dashboard socket)
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        **({"upgrade-insecure-requests": True} if HTTPS else {}),
    }
}
if env.bool("CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP
else:
    CONTENT_SECURITY_POLICY = _CSP

# --- Auth, i18n, static ----------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [  # every user, ensure_admin's too
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling on every login path (admin, /accounts/login/, /api/token/): django-axes locks a username from
# one address out after LOGIN_FAILURE_LIMIT failures for LOGIN_LOCKOUT_MINUTES, answering 429.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HTTP_RESPONSE_CODE = 429
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
LOGIN_URL = "/admin/login/"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# lightweight-charts' standalone build, installed by `npm ci` (Makefile), served as static/vendor/lightweight-charts/.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/lightweight-charts", BASE_DIR / "node_modules/lightweight-charts/dist"),
]

# API tokens (POST /api/token/) expire after this many hours (0: never); an expired one answers 401.
TOKEN_TTL_HOURS = env.int("TOKEN_TTL_HOURS", default=168)
# Mail: EMAIL_URL (django-environ, e.g. smtp+tls://user:password@mail.example:587) configures Django's mail and
# turns the password-reset pages on; without it they are not offered (404): no mail could reach the user.
EMAIL_CONFIGURED = bool(_secret("EMAIL_URL"))
if EMAIL_CONFIGURED:
    globals().update(env.email_url_config(_secret("EMAIL_URL")))  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, …
    DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cdb_project.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "cdb_project.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

LOGGING = {  # JSON lines with secrets masked (ground/logging.py); Celery keeps this too (cdb_project/ops.py)
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "ground.logging.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},  # one line per task drowns everything else
        "celery.worker.strategy": {"level": "WARNING"},
    },
}

# --- Operations (cdb_project/ops.py): /health, /metrics -----------------------------------------
# Several processes (Celery prefork children, web) share counters through prometheus_client's multiprocess
# mode when PROMETHEUS_MULTIPROC_DIR is set in their environment (an empty directory at start-up).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
PROMETHEUS_EXPORT_MIGRATIONS = False
HEALTH_TIMEOUT_SEC = env.float("HEALTH_TIMEOUT_SEC", default=0.8)
# /metrics (equity, exposure, trades) answers `Authorization: Bearer <METRICS_TOKEN>` (Prometheus) or logged-in staff.
METRICS_TOKEN = _secret("METRICS_TOKEN")
if METRICS_TOKEN and (METRICS_TOKEN.lower() in PLACEHOLDER_KEYS or len(METRICS_TOKEN) < 16):
    from django.core.exceptions import ImproperlyConfigured  # a token everybody has opens the account's figures

    raise ImproperlyConfigured(
        "METRICS_TOKEN is a placeholder or too short (at least 16 characters): generate one with "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, or leave it unset (staff only)"
    )
INSTALLED_APPS += ["django_prometheus", "cdb_project.ops.OpsConfig"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    *MIDDLEWARE,
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# --- Event bus wiring (see ground/bus.py) -------------------------------------
EVENT_CONSUMERS = {
    "market_data": ["trading.tasks.on_market_data"],  # risk watch, then the signal engine
    "signals": ["trading.tasks.on_signal"],
    "orders": ["risk.tasks.on_order"],
}
# A feed with a backlog (a replay, several symbols' candles at once) sends up to MARKET_DATA_BATCH_SIZE candles
# as one task, so the broker and the account are visited once per batch, not per candle. 1: a task per candle.
EVENT_BATCH_CONSUMERS = {"market_data": ["trading.tasks.on_market_data_batch"]}
MARKET_DATA_BATCH_SIZE = env.int("MARKET_DATA_BATCH_SIZE", default=64)
# A worker hands the events its task publishes straight to the next consumer in the same process instead of
# through the broker (see ground/bus.py): a live order, committed PENDING, goes on to its execution. (A
# paper signal is stored, decided and filled in one transaction.) Off: the live execution is a task of its own.
BUS_INLINE_CONSUMERS = env.bool("BUS_INLINE_CONSUMERS", default=True)
EVENT_PERSISTERS = {
    "market_data": "marketdata.ingest.persist_market_data",
    "alert": "risk.alerts.persist_alert",
}

# --- Market data (marketdata/) ------------------------------------------------------
# MEXC endpoints, overridable so tests (and a proxy) can point ccxt elsewhere. Public data needs no key.
MEXC_REST_URL = env.str("MEXC_REST_URL", default="https://api.mexc.com")
MEXC_CONTRACT_URL = env.str("MEXC_CONTRACT_URL", default="https://api.mexc.com/api/v1/contract")
MEXC_WS_URL = env.str("MEXC_WS_URL", default="wss://wbs-api.mexc.com/ws")
LOOKBACK_MINUTES = env.int("LOOKBACK_MINUTES", default=15)
TOP_N = env.int("TOP_N", default=10)
# "auto": wall time, except while a replay/simulation drives event time (marketdata/clock.py); "system": always wall.
MARKET_CLOCK = env.str("MARKET_CLOCK", default="auto")
DATA_STALE_CHECK_SECONDS = env.float("DATA_STALE_CHECK_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE = {
    "screener": {"task": "marketdata.screen_symbols", "schedule": 60.0},
    "data-stale-watch": {"task": "marketdata.check_data_stale", "schedule": DATA_STALE_CHECK_SECONDS},
    "reconcile-pending-orders": {"task": "execution.reconcile_pending", "schedule": 60.0},
    "redrive-new-signals": {"task": "cdb_project.redrive_signals", "schedule": 60.0},
}
# A signal still NEW (undecided) after this long lost its task (broker outage): its candle is evaluated again.
SIGNAL_REDRIVE_AFTER_SEC = env.int("SIGNAL_REDRIVE_AFTER_SEC", default=120)

# --- Dashboard and REST API ------------------------------------------------------------
INSTALLED_APPS += ["django_filters", "drf_spectacular_sidecar"]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
REST_FRAMEWORK.update(
    DEFAULT_PAGINATION_CLASS="cdb_project.api.pagination.Pagination",
    PAGE_SIZE=50,
    DEFAULT_FILTER_BACKENDS=["django_filters.rest_framework.DjangoFilterBackend"],
)
SPECTACULAR_SETTINGS = {
    "TITLE": "Claire de Binare API",
    "DESCRIPTION": "Status, orders, trades, positions, signals, alerts, risk parameters, halt / release. "
    "Authenticate with `Authorization: Token <key>` (POST /api/token/) or a session.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # /api/schema/ and /api/docs/ need a login
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The alerts' and the notifications' levels are the same words with other labels: one name each.
    "ENUM_NAME_OVERRIDES": {
        "AlertLevelEnum": "risk.models.Alert.Level",
        "NotificationLevelEnum": "notify.models.LEVEL_CHOICES",
    },
}

# --- Live execution (execution/live.py) -------------------------------------------------
# Live orders only when LIVE_TRADING is on AND both keys are set (trade permission only, never withdraw).
# The REST base is MEXC_REST_URL above (tests point it at a local fake).
LIVE_TRADING = env.bool("LIVE_TRADING", default=False)
MEXC_API_KEY = _secret("MEXC_API_KEY")
MEXC_API_SECRET = _secret("MEXC_API_SECRET")
LIVE_ORDER_TIMEOUT_SEC = env.float("LIVE_ORDER_TIMEOUT_SEC", default=10.0)
# A live entry still PENDING and never sent after this many seconds is never sent: EXPIRED (1–3600 s).
_live_pending_max_age = env.str("LIVE_PENDING_MAX_AGE_SEC", default="30").strip()
try:
    LIVE_PENDING_MAX_AGE_SEC = float(_live_pending_max_age)
except ValueError:
    LIVE_PENDING_MAX_AGE_SEC = math.nan
if not 1 <= LIVE_PENDING_MAX_AGE_SEC <= 3600:  # nan and inf fail too
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"LIVE_PENDING_MAX_AGE_SEC must be a number of seconds from 1 to 3600, not {_live_pending_max_age!r}"
    )
# When the book and the exchange's balances differ: "alert" (CRITICAL alert) or "halt" (alert and halt trading).
LIVE_RECONCILE_ACTION = env.str("LIVE_RECONCILE_ACTION", default="halt").strip().lower()
if LIVE_RECONCILE_ACTION not in ("alert", "halt"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LIVE_RECONCILE_ACTION must be alert or halt, not {LIVE_RECONCILE_ACTION!r}")
CELERY_BEAT_SCHEDULE["reconcile-balances"] = {"task": "execution.reconcile_balances", "schedule": 60.0}
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "cdb_project.api.schema.document_errors",
]

# --- Notifications (notify/): alerts, fills and a daily report through Apprise ---------------------------------
# NOTIFY_URLS: comma-separated Apprise URLs, each with optional ?level=INFO|WARNING|CRITICAL (minimum alert level)
# and ?topics=alerts,fills,daily (default alerts,daily). Seeded into the database at `migrate`, edited in the admin.
INSTALLED_APPS += ["notify"]
NOTIFY_URLS = _secret("NOTIFY_URLS")
NOTIFY_TIMEOUT_SEC = env.float("NOTIFY_TIMEOUT_SEC", default=5.0)  # connect and read timeout of one delivery
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=5)
NOTIFY_RETRY_BACKOFF_SEC = env.float("NOTIFY_RETRY_BACKOFF_SEC", default=2.0)  # 2 s, 4 s, 8 s, … between attempts
NOTIFY_RETRY_BACKOFF_MAX_SEC = env.float("NOTIFY_RETRY_BACKOFF_MAX_SEC", default=60.0)
NOTIFY_BURST_LIMIT = env.int("NOTIFY_BURST_LIMIT", default=5)  # messages a window per destination; more: one digest
NOTIFY_BURST_WINDOW_SEC = env.float("NOTIFY_BURST_WINDOW_SEC", default=60.0)
# Embedded: what a process still has to send when it exits (a digest, a retry) is sent then, within this many seconds.
NOTIFY_EXIT_FLUSH_SEC = env.float("NOTIFY_EXIT_FLUSH_SEC", default=15.0)
# Called after the commit that stored an alert / order result; must be quick (notify.hooks hands on to a task).
EVENT_OBSERVERS = {"alerts": ["notify.hooks.observe"], "order_results": ["notify.hooks.observe"]}
CELERY_TASK_ROUTES = {"notify.*": {"queue": "notify"}}
# A crontab schedule as its fields: made a crontab by the Celery app (cdb_project/celery.py), not imported here
CELERY_BEAT_SCHEDULE["notify-daily-report"] = {
    "task": "notify.daily_report",
    "schedule": {"crontab": {"minute": 0, "hour": 0}},
}
LOGGING["loggers"]["apprise"] = {"level": "WARNING"}  # its DEBUG lines carry payloads and full URLs

# --- Optimization (optimize/): Optuna studies whose trials run on the `optimize` queue ---------------------------
# Workers for it: celery -A cdb_project worker -Q optimize -P solo. Trading workers (default queue) never take a trial.
INSTALLED_APPS += ["optimize"]
CELERY_TASK_ROUTES["optimize.*"] = {"queue": "optimize"}
LOGGING["loggers"]["optuna"] = {"level": "WARNING"}  # one INFO line per trial
