"""Settings, read from the environment only (see README "Configuration").

Two modes share this file: with no DATABASE_URL / CELERY_BROKER_URL the service runs
embedded (SQLite file under var/, in-process broker, only inside `manage.py standalone`);
with them it runs distributed against PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """The variable, stripped; the default when it is unset or empty (compose passes every
    variable, empty when the operator set none: docker/compose.yml)."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a number of seconds") from None


def env_json_object(name: str, default: dict[str, Any]) -> dict[str, Any]:
    """A JSON object, e.g. a storage backend's options; the default when unset."""
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: expected a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name}: expected a JSON object, got {raw!r}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")
DEBUG = env_bool("DEBUG", False)
INSECURE_DEV_SECRET_KEY = "django-insecure-orchestrator-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY") or INSECURE_DEV_SECRET_KEY
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# Transport security. Production sets these (see docs/deployment.md); `manage.py check
# --deploy` then reports nothing.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and the scraper may speak plain HTTP to a pod (the token still guards /metrics).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_SSL_REDIRECT)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# How many proxies in front of the service append the client's address to X-Forwarded-For
# (0: the socket's address is the client's). Read by orchestrator.login_lockout.client_ip.
TRUST_X_FORWARDED_FOR = env_int("TRUST_X_FORWARDED_FOR", 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "strawberry_django",
    "django_celery_beat",
    "axes",
    "django_htmx",
    "csp",
    "orchestrator",
    "workflows",
    "runs",
    "notifications",
    "events",
    "connections",
    "gitsync",
    "portal",
    "devtools",
]

MIDDLEWARE = [
    "orchestrator.middleware.RequestIDMiddleware",
    "orchestrator.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Turns a locked-out login into the lockout page (settings "Login lockout").
    "axes.middleware.AxesMiddleware",
    "orchestrator.statement_timeout.StatementTimeoutMiddleware",
    # API paths answer with and without their trailing slash, no redirect. Keep it after
    # CommonMiddleware (whose APPEND_SLASH would redirect first) and near the end: it
    # replays the middlewares after it when it serves a path with its slash toggled.
    "orchestrator.middleware.ForgivingPathMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"
WSGI_APPLICATION = "orchestrator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orchestrator.context_processors.platform",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
DEFAULT_SQLITE_PATH = VAR_DIR / "orchestrator.sqlite3"
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL:
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{DEFAULT_SQLITE_PATH}"
DATABASES: dict[str, Any] = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers and the single writer work side by side; IMMEDIATE takes the
        # write lock at BEGIN so two writers queue on the busy timeout instead of failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The engine's hot statements (orchestrator/fastsql.py, `run`) as server-side prepared
# statements on PostgreSQL: parsed and planned once per connection instead of on every
# task step. Off behind a pooler that hands one session's statements to several server
# connections (PgBouncer in transaction mode), where a prepared statement is not there.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Login lockout (django-axes; docs/deployment.md, "Login lockout") ----------------
# Every password login (the admin's, a future portal's) goes through axes first: after
# LOGIN_FAILURE_LIMIT failures in a row for one username from one address, that pair is
# refused (even with the right password) until LOGIN_COOLOFF_SECONDS pass without another
# try. Keyed on the pair, so a stranger cannot lock a user out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LOGIN_COOLOFF_SECONDS", 900))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "orchestrator.login_lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "orchestrator.login_lockout.lockout_response"

# --- The portal's sign-in (portal/urls.py) --------------------------------------------
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:index"
LOGOUT_REDIRECT_URL = "portal:login"
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600)

# --- Content-Security-Policy (django-csp) ----------------------------------------------
# Every page: scripts and styles only from this server's own files (no inline script, no
# CDN), nothing framed, forms posted only here. The portal, GraphiQL and the API docs are
# written for it; the admin's few inline style attributes are dropped, not its scripts.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "var" / "static")
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    # Teams' uploaded code packages (wheels named by their sha256): any Django storage
    # backend (S3 through django-storages, say) when workers do not share this disk.
    "packages": {
        "BACKEND": env_str(
            "PACKAGE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"
        ),
        "OPTIONS": env_json_object(
            "PACKAGE_STORAGE_OPTIONS", {"location": str(VAR_DIR / "packages")}
        ),
    },
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Also serve static files straight from the apps, so the embedded mode needs no collectstatic.
WHITENOISE_USE_FINDERS = True

# --- Platform: secrets, audit, tenancy ----------------------------------------------
# Fernet keys, newest first: new values are encrypted with the first, every key decrypts,
# so a key is rotated by putting a new one in front. Each is 32 url-safe base64 bytes.
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS")
# Key of the HMAC that chains audit events. Defaults to one derived from SECRET_KEY.
AUDIT_HMAC_KEY_FROM_ENV = bool(env_str("AUDIT_HMAC_KEY"))
AUDIT_HMAC_KEY = (
    env_str("AUDIT_HMAC_KEY")
    or hashlib.sha256(f"orchestrator-audit:{SECRET_KEY}".encode()).hexdigest()
)
# Only platform staff may create tenants when true; otherwise any signed-in user may.
TENANT_CREATION_STAFF_ONLY = env_bool("TENANT_CREATION_STAFF_ONLY", False)
# What a tenant's owner may set its quotas to, at most. New tenants get DEFAULT_TENANT_QUOTAS.
PLATFORM_QUOTA_LIMITS = {
    "max_workflows": env_int("PLATFORM_MAX_WORKFLOWS", 1000),
    "max_tasks_per_workflow": env_int("PLATFORM_MAX_TASKS_PER_WORKFLOW", 5000),
    "max_spec_bytes": env_int("PLATFORM_MAX_SPEC_BYTES", 1_048_576),
    "max_concurrent_runs": env_int("PLATFORM_MAX_CONCURRENT_RUNS", 500),
    "max_catchup_runs": env_int("PLATFORM_MAX_CATCHUP_RUNS", 1000),
    "max_tokens": env_int("PLATFORM_MAX_TOKENS", 1000),
}
DEFAULT_TENANT_QUOTAS = {
    "max_workflows": 100,
    "max_tasks_per_workflow": 500,
    "max_spec_bytes": 262_144,
    "max_concurrent_runs": 50,
    "max_catchup_runs": 100,
    "max_tokens": 100,
}
API_TOKEN_LAST_USED_RESOLUTION_SECONDS = 60

# --- REST and GraphQL ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "orchestrator.api.authentication.BearerTokenAuthentication",
        "orchestrator.api.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "orchestrator.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "orchestrator.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "orchestrator.api.errors.problem_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["orchestrator.api.parsers.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Per token or user; the per-tenant count follows authorisation (api/base.py).
    "DEFAULT_THROTTLE_CLASSES": ["orchestrator.api.throttling.CallerRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Orchestrator API",
    "DESCRIPTION": "Workflow orchestration as a service. Authenticate with "
    "`Authorization: Bearer orc_<prefix>_<secret>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "OAS_VERSION": "3.1.0",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "orchestrator.models.Role",
        "RunStateEnum": "runs.models.WorkflowRun.State",
        "TaskInstanceStateEnum": "runs.models.TaskInstance.State",
        "AttemptStateEnum": "runs.models.TaskAttempt.State",
        "BackfillStateEnum": "runs.models.Backfill.State",
        "PlannedChangeActionEnum": "workflows.api.serializers.PLAN_ACTIONS",
        # A backfill's planned interval: named before the plan above shared `action`.
        "ActionEnum": ["create", "rerun", "skip"],
        "SyncStatusEnum": "gitsync.api.serializers.SYNC_STATUSES",
        # A notification delivery's: named before a git sync's shared `status`.
        "StatusEnum": ["pending", "sent", "failed", "suppressed"],
    },
    # Who may read /api/schema/ and /api/docs/: API_DOCS_PUBLIC below.
    "SERVE_PERMISSIONS": ["orchestrator.api.schema.DocsVisibility"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "workflows.api.views.add_workflow_spec_schema",
    ],
    # Swagger UI served from this service (no CDN): drf-spectacular-sidecar.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# /api/schema/ and /api/docs/ for anyone (1) or for signed-in users and token holders (0).
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", DEBUG)
GRAPHQL_MAX_DEPTH = env_int("GRAPHQL_MAX_DEPTH", 10)
GRAPHQL_MAX_ALIASES = env_int("GRAPHQL_MAX_ALIASES", 15)
GRAPHQL_MAX_TOKENS = env_int("GRAPHQL_MAX_TOKENS", 2000)
# The most objects one GraphQL query may return at worst: list limits multiplied along each
# path (docs/api.md, "What one request may cost"). Refused before it runs beyond.
GRAPHQL_MAX_COST = env_int("GRAPHQL_MAX_COST", 50_000)
# GraphiQL at /graphql for a browser (1) or not (0). It only shows the schema explorer and is
# served from this service's own files; every query still needs authentication.
GRAPHIQL = env_bool("GRAPHIQL", True)
# Who may introspect the GraphQL schema: "on" (anyone), "authenticated", or "off".
GRAPHQL_INTROSPECTION = env_str("GRAPHQL_INTROSPECTION", "on" if DEBUG else "authenticated")
if GRAPHQL_INTROSPECTION not in {"on", "authenticated", "off"}:
    raise ImproperlyConfigured(
        f"GRAPHQL_INTROSPECTION={GRAPHQL_INTROSPECTION!r}: expected on, authenticated or off"
    )
# The largest request body, in bytes (413 beyond): twice the largest spec a tenant may have
# (a spec sent as a GraphQL string is escaped), and room for the rest.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "API_MAX_BODY_BYTES", 2 * PLATFORM_QUOTA_LIMITS["max_spec_bytes"] + 65_536
)
# PostgreSQL cancels any query of an API request (REST, GraphQL) running longer; 0: never.
API_STATEMENT_TIMEOUT_MS = env_int("API_STATEMENT_TIMEOUT_MS", 15_000)
# Rate limits, in requests per minute, per token (or signed-in user) and per tenant, apart
# for triggers and for every other request (docs/api.md, "Rate limits"). A tenant's policy
# `rate_limits` sets its own. 0: no limit.
RATE_LIMITS = {
    "triggers": {
        "per_token": env_int("RATE_LIMIT_TRIGGERS_PER_TOKEN", 60),
        "per_tenant": env_int("RATE_LIMIT_TRIGGERS_PER_TENANT", 300),
    },
    "reads": {
        "per_token": env_int("RATE_LIMIT_READS_PER_TOKEN", 1200),
        "per_tenant": env_int("RATE_LIMIT_READS_PER_TENANT", 6000),
    },
}
RATE_LIMIT_WINDOW_SECONDS = 60

# --- Celery -------------------------------------------------------------------------
# No CELERY_BROKER_URL means the in-process broker, which only `manage.py standalone` may
# use: a worker, beat or web server started without one refuses to start.
EMBEDDED_BROKER = not env_str("CELERY_BROKER_URL")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    {"polling_interval": 0.005}
    if EMBEDDED_BROKER
    else {
        # Above the largest task timeout, so Redis never re-delivers a running task.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600 + 600),
        "global_keyprefix": env_str("CELERY_KEY_PREFIX"),
    }
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes every database connection before and after each task
# unless this is set: a new PostgreSQL connection per task (about a third of a noop's cost
# on a worker, seen with py-spy). Reuse it for this many tasks; CONN_MAX_AGE, the health
# checks and the workers' retries (runs/tasktypes/resilience.py) deal with a connection gone bad.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# A broker blip must not kill running tasks: their state lives in the database, and a
# redelivered message finds its try already claimed (docs/reliability.md).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Task execution and housekeeping on separate queues; a worker serves both unless told
# otherwise (`celery worker -Q tasks` / `-Q housekeeping` to split them into pools).
CELERY_TASK_DEFAULT_QUEUE = "tasks"
CELERY_TASK_QUEUES = [Queue("tasks"), Queue("housekeeping"), Queue("notifications")]
CELERY_TASK_ROUTES = {
    "notifications.*": {"queue": "notifications"},
    "events.dispatch": {"queue": "housekeeping"},
    "events.send_lineage": {"queue": "notifications"},
    "runs.reconcile": {"queue": "housekeeping"},
    "runs.retention": {"queue": "housekeeping"},
    "workflows.schedule_tick": {"queue": "housekeeping"},
    "gitsync.*": {"queue": "housekeeping"},
}

# --- Cache: the rate-limit counters --------------------------------------------------
# Shared by every web process in Redis: CACHE_URL, else the broker when it is Redis. The
# embedded mode (one process) counts in its own memory.
CACHE_URL = env_str("CACHE_URL") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
CACHES: dict[str, Any] = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX") or env_str("CELERY_KEY_PREFIX"),
            # An unreachable Redis costs a request at most this, then counts nothing.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Traces (docs/metrics.md, "Traces") -------------------------------------------------
# OpenTelemetry, off unless an OTLP endpoint is set. These are the exporter's own variables
# (it reads them, with OTEL_EXPORTER_OTLP_HEADERS for an API key); read here to decide.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
OTEL_EXPORTER_OTLP_HEADERS = env_str("OTEL_EXPORTER_OTLP_HEADERS")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "orchestrator")
TRACING_ENABLED = bool(OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)

# --- Retention (docs/retention.md) --------------------------------------------------
# Finished runs (with their tasks, tries, logs and results) and old events are deleted
# this many days after they ended, unless a tenant's policy `retention_days` says
# otherwise (at most RETENTION_DAYS_MAX). The audit log is kept.
RETENTION_DAYS_DEFAULT = env_int("RETENTION_DAYS_DEFAULT", 90)
RETENTION_DAYS_MAX = env_int("RETENTION_DAYS_MAX", 3650)

# --- Metrics (docs/metrics.md) ------------------------------------------------------
# Every process adds its counts to a buffer that a thread flushes into Redis every
# METRICS_FLUSH_SECONDS (METRICS_REDIS_URL: the cache's Redis by default; the embedded mode
# keeps them in memory); /metrics renders them. /metrics answers a caller with
# `Authorization: Bearer <METRICS_TOKEN>` or from METRICS_ALLOWED_NETWORKS (addresses or
# networks, comma-separated); with neither set it is off (404).
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS")
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is no address or network (10.0.0.0/8, ::1)"
        ) from None
METRICS_REDIS_URL = env_str("METRICS_REDIS_URL") or CACHE_URL
METRICS_KEY_PREFIX = env_str("METRICS_KEY_PREFIX") or env_str("CELERY_KEY_PREFIX") + "orc:metrics:"
METRICS_FLUSH_SECONDS = env_float("METRICS_FLUSH_SECONDS", 5.0)
# Each Celery worker says it is alive this often; /metrics counts it down after 3 misses.
METRICS_HEARTBEAT_SECONDS = env_float("METRICS_HEARTBEAT_SECONDS", 10.0)

# --- Engine -------------------------------------------------------------------------
# A running attempt renews its lease every third of this; when it lapses (the worker died)
# the reconciler fails the try (and retries it if tries remain).
TASK_LEASE_SECONDS = env_int("TASK_LEASE_SECONDS", 30)
# A try whose worker died (its lease expired) is run again without using up the task's
# retries, at most this many times per task instance (then it counts as a failure).
TASK_LOST_TRY_LIMIT = env_int("TASK_LOST_TRY_LIMIT", 2)
# A worker that finishes a task runs the next one its end made ready itself (no broker
# round trip) for up to this many seconds of one delivery, then sends the rest as messages.
TASK_CONTINUE_SECONDS = env_float("TASK_CONTINUE_SECONDS", 2.0)
# How long a worker keeps retrying a step (claim, finish) while the database is unreachable.
DB_RETRY_SECONDS = env_int("DB_RETRY_SECONDS", 300)
TASK_LOG_FLUSH_SECONDS = 0.5
TASK_LOG_MAX_BYTES = env_int("TASK_LOG_MAX_BYTES", 5 * 1024 * 1024)
TASK_RESULT_MAX_BYTES = env_int("TASK_RESULT_MAX_BYTES", 64 * 1024)
# Instances queued longer than this get their message sent again (it was lost).
# (While the task queue has a backlog, only after QUEUED_RESEND_MAX_SECONDS: see reconciler.)
QUEUED_RESEND_AFTER_SECONDS = env_int("QUEUED_RESEND_AFTER_SECONDS", 60)
QUEUED_RESEND_MAX_SECONDS = env_int("QUEUED_RESEND_MAX_SECONDS", 1800)
RECONCILE_INTERVAL_SECONDS = env_int("RECONCILE_INTERVAL_SECONDS", 2)
# A scheduled firing older than this when the tick sees it was missed (downtime, a pause):
# the schedule's catch-up policy decides whether it runs. Younger ones always run.
SCHEDULE_MISFIRE_GRACE_SECONDS = env_int("SCHEDULE_MISFIRE_GRACE_SECONDS", 60)
# The most intervals one backfill may cover (a larger range is refused before it is listed).
BACKFILL_MAX_INTERVALS = env_int("BACKFILL_MAX_INTERVALS", 1000)
# Modules (and their submodules) whose functions `python` tasks may call.
PYTHON_TASK_MODULES = env_list("PYTHON_TASK_MODULES", "runs.library")
# --- Team code (docs/team-code.md) ----------------------------------------------------
# Where a package's dependencies are resolved at upload and installed from on workers: a
# simple index (PEP 503) and/or directories or pages of wheels (pip's --find-links). With
# PACKAGE_INDEX_URL empty, only PACKAGE_FIND_LINKS is used (an offline installation).
PACKAGE_INDEX_URL = os.environ.get("PACKAGE_INDEX_URL", "https://pypi.org/simple").strip()
PACKAGE_FIND_LINKS = env_list("PACKAGE_FIND_LINKS")
# The largest package accepted for upload, in bytes (the archive as sent).
PACKAGE_MAX_BYTES = env_int("PACKAGE_MAX_BYTES", 50 * 1024 * 1024)
# How long building a wheel, locking its dependencies, building an environment or indexing
# a package may take, in seconds.
PACKAGE_BUILD_TIMEOUT = env_int("PACKAGE_BUILD_TIMEOUT", 600)
# Where workers keep one virtual environment per package digest, and how large the cache
# may grow (MB) before the least recently used environments are removed.
PACKAGE_ENV_DIR = Path(env_str("PACKAGE_ENV_DIR") or VAR_DIR / "envs")
PACKAGE_ENV_MAX_MB = env_int("PACKAGE_ENV_MAX_MB", 5120)
# --- Task sandbox (docs/task-types.md, "What a task can reach") ---------------------------
# "on": every shell and python task runs in a bubblewrap sandbox (its tenant's own uid, its
# own PID namespace and mount view, no inherited descriptors, no_new_privs, the limits
# below) and fails, saying why, where a worker cannot make one. "off": tasks run as the
# worker's own processes, able to read everything the worker can: single-tenant
# installations only (the admin and /readyz say so).
TASK_SANDBOX = env_str("TASK_SANDBOX", "on").lower()
if TASK_SANDBOX not in {"on", "off"}:
    raise ImproperlyConfigured(f"TASK_SANDBOX={TASK_SANDBOX!r}: expected on or off")
TASK_SANDBOX_BWRAP = env_str("TASK_SANDBOX_BWRAP", "bwrap")
# The uids (and gids) of tenants' tasks: tenant id N runs as first + N. Nothing else on a
# worker host may use them. A worker that is not root maps it onto its own uid instead.
TASK_SANDBOX_UIDS = env_str("TASK_SANDBOX_UIDS", "200000-299999")
# Where each task's private working directory and /tmp are made (and deleted afterwards).
TASK_SANDBOX_ROOT = env_str("TASK_SANDBOX_ROOT")
# Host paths every task may read besides the system's (/usr, a few files of /etc).
TASK_SANDBOX_READONLY_PATHS = env_list("TASK_SANDBOX_READONLY_PATHS")
# A worker process makes the sandboxes of its next shell tasks ahead (bwrap and its PID 1
# waiting for a task), two per tenant and sandbox settings it ran a task of lately; each
# serves that tenant's shell tasks one after another, emptied between them, and is ended
# this long after it was made. 0: a sandbox is made for each task when it comes.
TASK_SANDBOX_WARM_SECONDS = env_float("TASK_SANDBOX_WARM_SECONDS", 60.0)
# The sandbox's PID 1: "auto" (the compiled orc-sandbox-init that `make install` and the
# image build into the environment's bin directory, else supervise.py), "python"
# (supervise.py: about 16 ms more CPU per task), or the path of a compiled one.
TASK_SANDBOX_INIT = env_str("TASK_SANDBOX_INIT", "auto")
if TASK_SANDBOX_INIT not in {"auto", "python"} and not TASK_SANDBOX_INIT.startswith("/"):
    raise ImproperlyConfigured(
        f"TASK_SANDBOX_INIT={TASK_SANDBOX_INIT!r}: expected auto, python or an absolute path"
    )
# Resource limits of shell and python tasks: a tenant's policy `task_limits` sets its own
# (up to the maximum here), a task's `rlimits` may only lower them. 0: no limit.
TASK_LIMIT_KEYS = ("memory_mb", "cpu_seconds", "processes", "open_files", "file_size_mb")
TASK_LIMITS_DEFAULT = {
    "memory_mb": env_int("TASK_DEFAULT_MEMORY_MB", 4096),
    "cpu_seconds": env_int("TASK_DEFAULT_CPU_SECONDS", 0),
    "processes": env_int("TASK_DEFAULT_PROCESSES", 512),
    "open_files": env_int("TASK_DEFAULT_OPEN_FILES", 4096),
    "file_size_mb": env_int("TASK_DEFAULT_FILE_SIZE_MB", 10240),
}
TASK_LIMITS_MAX = {
    "memory_mb": env_int("TASK_MAX_MEMORY_MB", 65536),
    "cpu_seconds": env_int("TASK_MAX_CPU_SECONDS", 0),
    "processes": env_int("TASK_MAX_PROCESSES", 4096),
    "open_files": env_int("TASK_MAX_OPEN_FILES", 65536),
    "file_size_mb": env_int("TASK_MAX_FILE_SIZE_MB", 102400),
}
# Hosts, IP addresses or networks (CIDR) that http tasks and sensors may reach although the
# SSRF guard blocks them (private, loopback, link-local, metadata ranges), for every
# tenant; a tenant's policy `http_allowed_hosts` adds its own. Empty: only public addresses.
HTTP_ALLOWED_HOSTS = env_list("HTTP_ALLOWED_HOSTS")
# The same for the sql task's postgres and mysql hosts (and the connection test): a
# database on a private network needs its host name, address or network listed here, or
# in the tenant policy `sql_allowed_hosts`. Empty: only public addresses.
SQL_ALLOWED_HOSTS = env_list("SQL_ALLOWED_HOSTS")
# SQLite files that sql tasks may open: under <SQLITE_TASK_ROOT>/<tenant slug>/ only, so a
# tenant reaches neither another tenant's files nor the worker's. Empty: any path but the
# platform's own database (development; set it in production).
SQLITE_TASK_ROOT = env_str("SQLITE_TASK_ROOT")
# Container tasks: "in-cluster" (the worker runs in Kubernetes with a service account), a
# kubeconfig file's path, or empty for the default kubeconfig (~/.kube/config, $KUBECONFIG).
KUBERNETES_CONFIG = env_str("KUBERNETES_CONFIG")
KUBERNETES_NAMESPACE = env_str("KUBERNETES_NAMESPACE", "default")
KUBERNETES_JOB_TTL_SECONDS = env_int("KUBERNETES_JOB_TTL_SECONDS", 3600)  # finished Jobs kept
KUBERNETES_POLL_SECONDS = env_float("KUBERNETES_POLL_SECONDS", 1.0)  # status poll (at most 1s)
# How long image-pull / container-config errors and a Kubernetes API outage are tolerated.
KUBERNETES_START_GRACE_SECONDS = env_int("KUBERNETES_START_GRACE_SECONDS", 60)
KUBERNETES_API_GRACE_SECONDS = env_int("KUBERNETES_API_GRACE_SECONDS", 60)
# Pods run with runAsNonRoot and every capability dropped (images must not need root).
KUBERNETES_RESTRICTED_PODS = env_bool("KUBERNETES_RESTRICTED_PODS", False)
CELERY_TIMEZONE = "UTC"

# --- Notifications (docs/notifications.md) -------------------------------------------
# The base of links in messages (a run's page): where people reach this service.
PUBLIC_URL = env_str("PUBLIC_URL") or "http://127.0.0.1:8000"
# Mail: EMAIL_URL (smtp://user:password@host:587/?tls=True, smtps://... for implicit TLS,
# console:// to print mail instead of sending it), or the EMAIL_* settings one by one.
if env_str("EMAIL_URL"):
    vars().update(dj_email_url.parse(env_str("EMAIL_URL")))
else:
    EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
    EMAIL_PORT = env_int("EMAIL_PORT", 25)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "orchestrator@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Deliveries: a temporary transport error (5xx, 429, a timeout) is retried after
# NOTIFY_RETRY_DELAY_SECONDS, doubling each time (capped by NOTIFY_RETRY_MAX_DELAY_SECONDS
# or a longer Retry-After), up to NOTIFY_MAX_ATTEMPTS attempts in all.
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 6)
NOTIFY_RETRY_DELAY_SECONDS = env_float("NOTIFY_RETRY_DELAY_SECONDS", 10.0)
NOTIFY_RETRY_MAX_DELAY_SECONDS = env_float("NOTIFY_RETRY_MAX_DELAY_SECONDS", 900.0)
NOTIFY_TIMEOUT_SECONDS = env_float("NOTIFY_TIMEOUT_SECONDS", 10.0)
# Hosts or networks Slack and webhook channels may reach although the SSRF guard blocks
# them (private, loopback, ...); a tenant's policy `http_allowed_hosts` adds its own, as for
# http tasks. Empty: only public addresses (hooks.slack.com, a public receiver).
NOTIFY_ALLOWED_HOSTS = env_list("NOTIFY_ALLOWED_HOSTS")

# --- Events, webhooks, datasets (docs/events.md) --------------------------------------
# An inbound webhook's POST: its body at most WEBHOOK_MAX_BYTES, its signature's timestamp
# within WEBHOOK_TOLERANCE_SECONDS of now (the replay window, both ways), at most
# WEBHOOK_RATE_LIMIT POSTs a minute per webhook URL (0: no limit).
WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 262144)
WEBHOOK_TOLERANCE_SECONDS = env_int("WEBHOOK_TOLERANCE_SECONDS", 300)
WEBHOOK_RATE_LIMIT = env_int("WEBHOOK_RATE_LIMIT", 120)
# A published event's data at most this many bytes (as JSON).
EVENT_MAX_BYTES = env_int("EVENT_MAX_BYTES", 262144)

# --- GitOps pull mode (docs/gitops.md) -------------------------------------------------
# Git sources clone https://, ssh:// and user@host:path remotes; file:// and local paths
# only with GITSYNC_ALLOW_LOCAL=1 (tests, a single machine; keep it off in production: a
# tenant could read any repository the worker's user can). Hosts go through the network
# guard: a private git server needs its name, address or network in GITSYNC_ALLOWED_HOSTS
# (or the tenant policy `git_allowed_hosts`). GITSYNC_SSH_KNOWN_HOSTS: a known_hosts file
# ssh checks hosts against (empty: a host's key is accepted on each sync's first sight).
GITSYNC_ALLOW_LOCAL = env_bool("GITSYNC_ALLOW_LOCAL", False)
GITSYNC_ALLOWED_HOSTS = env_list("GITSYNC_ALLOWED_HOSTS")
GITSYNC_SSH_KNOWN_HOSTS = env_str("GITSYNC_SSH_KNOWN_HOSTS")
GITSYNC_TIMEOUT_SECONDS = env_int("GITSYNC_TIMEOUT_SECONDS", 120)

# --- OpenLineage (docs/lineage.md, "OpenLineage") -------------------------------------
# Run events of every task attempt to an OpenLineage backend: OPENLINEAGE_TRANSPORT http
# (the default when OPENLINEAGE_URL is set: POSTs to OPENLINEAGE_URL + OPENLINEAGE_ENDPOINT,
# e.g. Marquez at http://marquez:5000, with OPENLINEAGE_API_KEY as a bearer token if set),
# console (the log) or file (OPENLINEAGE_FILE, one JSON event a line); off when unset. The
# URL is the platform's, not a tenant's: it is not subject to the SSRF guard.
OPENLINEAGE_URL = env_str("OPENLINEAGE_URL")
OPENLINEAGE_ENDPOINT = env_str("OPENLINEAGE_ENDPOINT") or "api/v1/lineage"
OPENLINEAGE_API_KEY = env_str("OPENLINEAGE_API_KEY")
OPENLINEAGE_FILE = env_str("OPENLINEAGE_FILE")
OPENLINEAGE_TRANSPORT = env_str("OPENLINEAGE_TRANSPORT") or ("http" if OPENLINEAGE_URL else "off")
if OPENLINEAGE_TRANSPORT not in {"http", "console", "file", "off"}:
    raise ImproperlyConfigured(
        f"OPENLINEAGE_TRANSPORT={OPENLINEAGE_TRANSPORT!r}: expected http, console, file or off"
    )
if OPENLINEAGE_TRANSPORT == "http" and not OPENLINEAGE_URL:
    raise ImproperlyConfigured("OPENLINEAGE_TRANSPORT=http needs OPENLINEAGE_URL")
if OPENLINEAGE_TRANSPORT == "file" and not OPENLINEAGE_FILE:
    raise ImproperlyConfigured("OPENLINEAGE_TRANSPORT=file needs OPENLINEAGE_FILE")
OPENLINEAGE_ENABLED = OPENLINEAGE_TRANSPORT != "off"
# Jobs are named in OPENLINEAGE_NAMESPACE/<tenant>, datasets in OPENLINEAGE_NAMESPACE://<tenant>.
OPENLINEAGE_NAMESPACE = env_str("OPENLINEAGE_NAMESPACE") or "orchestrator"
OPENLINEAGE_TIMEOUT = env_float("OPENLINEAGE_TIMEOUT", 5.0)
# A temporary error (5xx, 429, no answer) is retried with the notifications' backoff
# (NOTIFY_RETRY_DELAY_SECONDS doubling up to NOTIFY_RETRY_MAX_DELAY_SECONDS), up to this
# many attempts in all.
OPENLINEAGE_MAX_ATTEMPTS = env_int("OPENLINEAGE_MAX_ATTEMPTS", 12)

# --- Logging ------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# plain: a line of text (the default); json: one JSON object a line, with the request id,
# tenant, workflow, run, task and try where they apply (orchestrator/logs.py).
LOG_FORMAT = env_str("LOG_FORMAT", "plain").lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}: expected plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "orchestrator.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "axes.apps": {"level": "WARNING"},  # not its banner on every manage.py command
    },
}
