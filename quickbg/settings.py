"""QuickBG settings: one module, driven by environment variables.

Every variable is listed, with its default and meaning, in the README's configuration table.
Defaults are for trying QuickBG locally (SQLite, local files, DEBUG on); production sets
``DEBUG=false`` plus ``SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL`` and the S3 variables.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.conf import global_settings
from django.core.exceptions import ImproperlyConfigured

from quickbg import backends, csp_policy, logs
from quickbg.env import (
    check_url,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_lockout_by,
    env_rate,
    env_seconds_list,
    env_str,
    env_url,
)
from removal import modelstore

BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless asked for: `make run` / `make test` set DEBUG=true; a deployment that forgets the
# variable gets production behaviour (and must then set SECRET_KEY), never the dev key.
DEBUG = env_bool("DEBUG", False)
# Local state of `make run` (SQLite file, media, redis data, demo password).
STATE_DIR = Path(env_str("QUICKBG_STATE_DIR", str(BASE_DIR / "var")))
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["*"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = [check_url("CSRF_TRUSTED_ORIGINS", origin, ("http", "https"))
                        for origin in env_list("CSRF_TRUSTED_ORIGINS", [])]
PORT = env_int("PORT", 8000, minimum=1, maximum=65535)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from this origin, no CDN
    "csp",
    "django_rq",
    "axes",
    "accounts",
    "removal",
]

MIDDLEWARE = [
    # First: a body over QUICKBG_MAX_BODY_MB is refused (413) before anything reads it.
    "removal.api.limits.BodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response (quickbg.csp; policy below).
    "quickbg.csp.PathCSPMiddleware",
    # Static files for the web page and the admin under gunicorn (no separate web server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a sign-in refused by the lockout (accounts.lockout) into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "quickbg.urls"
WSGI_APPLICATION = "quickbg.wsgi.application"
APPEND_SLASH = False

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

# --- Database --------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{STATE_DIR / 'quickbg.sqlite3'}")
DATABASES = {"default": backends.database(
    DATABASE_URL, sqlite_timeout=env_int("QUICKBG_SQLITE_TIMEOUT", 30, minimum=1))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# Sign-in lockout (django-axes): QUICKBG_LOGIN_FAILURE_LIMIT failures for one username from one
# client address lock that pair out for QUICKBG_LOGIN_COOLOFF_MINUTES, on the admin login form
# and POST /api/v1/auth/token alike. The address is the one the API throttles use (NUM_PROXIES).
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("QUICKBG_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("QUICKBG_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
# What a lockout counts failures by: "username+ip_address" (a pair, the default), and/or
# "ip_address" (every username from one address: stops password spraying, but can lock out
# everyone behind one NAT) or "username" (from anywhere: lets anyone lock an account).
AXES_LOCKOUT_PARAMETERS = env_lockout_by("QUICKBG_LOGIN_LOCKOUT_BY", ["username+ip_address"])
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_ip"
AXES_USERNAME_CALLABLE = "accounts.lockout.client_username"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # failures are recorded; successful sign-ins are not
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a rule: revokes the user's refresh tokens after a password change (accounts.passwords).
    {"NAME": "accounts.passwords.RevokeTokensOnPasswordChange"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(STATE_DIR / "static")))
try:  # whitenoise serves from it after collectstatic, and warns when it is missing
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:  # a read-only image: collectstatic made it at build time
    pass
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# --- Models (removal/modelstore.py): QUICKBG_EXTRA_MODELS's entries join first (a queue each) --
QUICKBG_EXTRA_MODELS = backends.register_extra_models(env_str("QUICKBG_EXTRA_MODELS"))

# --- Redis and the queue ------------------------------------------------------------------------
# Empty REDIS_URL: the URL `make run` wrote to STATE_DIR/redis-url, if any (quickbg/backends.py).
REDIS_URL_FILE = STATE_DIR / "redis-url"
REDIS_URL = backends.redis_url(REDIS_URL_FILE)
QUICKBG_QUEUE = env_str("QUICKBG_QUEUE", "quickbg").strip() or "quickbg"
QUICKBG_BATCH_QUEUE = f"{QUICKBG_QUEUE}-batch"
# The task queue, its batch queue (taken only when the task queue is empty) and webhooks'.
RQ_QUEUES = backends.rq_queues(url=REDIS_URL, name=QUICKBG_QUEUE,
                               job_timeout=env_int("QUICKBG_JOB_TIMEOUT", 300, minimum=10))
# Enqueue only after the surrounding transaction commits (django-rq 4's default, made explicit).
# removal/queue.py and removal/worker.py say why the queue and worker classes are QuickBG's own.
RQ = {
    "COMMIT_MODE": "on_db_commit",
    "QUEUE_CLASS": "removal.queue.ResilientQueue",
    "WORKER_CLASS": "removal.worker.QuickBGWorker",
}

# --- Storage --------------------------------------------------------------------------------
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
MEDIA_ROOT = Path(env_str("QUICKBG_MEDIA_ROOT", str(STATE_DIR / "media")))
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = env_url("AWS_S3_ENDPOINT_URL", "", ("http", "https")) or None
    AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "us-east-1")
    AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID") or None
    AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY") or None
    AWS_S3_ADDRESSING_STYLE = env_choice("AWS_S3_ADDRESSING_STYLE", "path",
                                         ("path", "virtual", "auto"))
    AWS_S3_VERIFY = backends.env_tls_verify("AWS_S3_VERIFY")  # true, false or a CA bundle
    AWS_S3_SIGNATURE_VERSION = "s3v4"
    AWS_DEFAULT_ACL = None
    AWS_S3_FILE_OVERWRITE = True
    AWS_QUERYSTRING_AUTH = True
    # django-storages reads the AWS_* settings above as S3Storage's options.
    _files_backend = {"BACKEND": "storages.backends.s3.S3Storage"}
else:
    _files_backend = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # A result written again (a retried task) replaces the old file in one step.
        "OPTIONS": {"location": str(MEDIA_ROOT), "allow_overwrite": True},
    }
STORAGES = {
    "default": _files_backend,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Model and pipeline ---------------------------------------------------------------------------
QUICKBG_MODELS_DIR = Path(env_str("QUICKBG_MODELS_DIR", str(Path.home() / ".cache/quickbg/models")))
QUICKBG_MODEL = env_choice("QUICKBG_MODEL", modelstore.DEFAULT_MODEL, list(modelstore.MODELS))
QUICKBG_MAX_LOADED_MODELS = env_int("QUICKBG_MAX_LOADED_MODELS", 2, minimum=1)  # LRU, per worker
# bria-rmbg is non-commercial: refused unless true. remove.bg's type -> model ("person=NAME,...").
QUICKBG_ALLOW_NONCOMMERCIAL_MODELS = env_bool("QUICKBG_ALLOW_NONCOMMERCIAL_MODELS", False)
QUICKBG_TYPE_MODELS = backends.type_models(env_str("QUICKBG_TYPE_MODELS"))
QUICKBG_ORT_THREADS = env_int("QUICKBG_ORT_THREADS", 0, minimum=0)  # 0 = one per core
# ONNX Runtime execution providers in order of preference (the rule: quickbg/backends.py).
QUICKBG_ORT_PROVIDERS = backends.ort_providers_setting()

# --- Validation and task limits -------------------------------------------------------------------
QUICKBG_MAX_UPLOAD_MB = env_float("QUICKBG_MAX_UPLOAD_MB", 10, minimum=0.001)
QUICKBG_MAX_DIMENSION = env_int("QUICKBG_MAX_DIMENSION", 4096, minimum=1)
QUICKBG_MIN_DIMENSION = env_int("QUICKBG_MIN_DIMENSION", 50, minimum=1)
if QUICKBG_MIN_DIMENSION > QUICKBG_MAX_DIMENSION:
    raise ImproperlyConfigured(
        f"QUICKBG_MIN_DIMENSION ({QUICKBG_MIN_DIMENSION}) must not exceed "
        f"QUICKBG_MAX_DIMENSION ({QUICKBG_MAX_DIMENSION})"
    )
QUICKBG_MAX_RETRIES = env_int("QUICKBG_MAX_RETRIES", 3, minimum=0)
QUICKBG_RETRY_DELAY = env_int("QUICKBG_RETRY_DELAY", 60, minimum=0)
# Claims a task may have in its whole life, retries included (neither the API nor the admin
# resets it); past it, ``POST tasks/{id}/retry`` answers 409.
QUICKBG_MAX_TASK_ATTEMPTS = env_int("QUICKBG_MAX_TASK_ATTEMPTS", 10, minimum=1)
QUICKBG_JOB_TIMEOUT = RQ_QUEUES[QUICKBG_QUEUE]["DEFAULT_TIMEOUT"]
QUICKBG_URL_EXPIRY = env_int("QUICKBG_URL_EXPIRY", 3600, minimum=1)
# POST /v1.0/removebg waits this long for its task, then answers 504 with the task id to poll.
QUICKBG_SYNC_TIMEOUT = env_float("QUICKBG_SYNC_TIMEOUT", 60, minimum=1)
# remove.bg-style credits per user and calendar month (UTC); 0 = unlimited (402 when used up).
QUICKBG_MONTHLY_CREDITS = env_float("QUICKBG_MONTHLY_CREDITS", 0, minimum=0)
# Workers re-enqueue tasks no live job holds every N s (0 = never), ignoring ones touched recently.
QUICKBG_RECONCILE_INTERVAL = env_int("QUICKBG_RECONCILE_INTERVAL", 30, minimum=0)
QUICKBG_RECONCILE_GRACE = env_int("QUICKBG_RECONCILE_GRACE", 30, minimum=0)
# Fetching user-given URLs (image_url, webhook targets; removal/fetch.py): connect and total
# time limits, and host:port or CIDR entries that may be private anyway (intranets, tests).
QUICKBG_FETCH_CONNECT_TIMEOUT = env_float("QUICKBG_FETCH_CONNECT_TIMEOUT", 5, minimum=0.1)
QUICKBG_FETCH_TIMEOUT = env_float("QUICKBG_FETCH_TIMEOUT", 20, minimum=0.1)
QUICKBG_FETCH_ALLOW = env_list("QUICKBG_FETCH_ALLOW", [])
# Webhooks (removal/services/webhooks.py): per-attempt timeout, retry delays (27 h in all),
# endpoints per user, image workers delivering at once (worker.py), links' public address.
QUICKBG_WEBHOOK_TIMEOUT = env_float("QUICKBG_WEBHOOK_TIMEOUT", 10, minimum=0.1)
QUICKBG_WEBHOOK_CONCURRENCY = env_int("QUICKBG_WEBHOOK_CONCURRENCY", 1, minimum=1)
QUICKBG_WEBHOOK_RETRY_DELAYS = env_seconds_list(
    "QUICKBG_WEBHOOK_RETRY_DELAYS", [10, 60, 300, 1800, 7200, 18000, 36000, 36000])
QUICKBG_WEBHOOK_MAX_ENDPOINTS = env_int("QUICKBG_WEBHOOK_MAX_ENDPOINTS", 10, minimum=1)
QUICKBG_PUBLIC_URL = env_str("QUICKBG_PUBLIC_URL", f"http://localhost:{PORT}").rstrip("/")
# Result reuse: the same user's same image bytes, options and model weights get the stored
# result at once (the task says "cached": true) instead of a model run.
QUICKBG_REUSE_RESULTS = env_bool("QUICKBG_REUSE_RESULTS", True)
# Retention: uploads older than N days lose their stored original and results (rows kept, marked
# expired); a worker runs it once a day. 0 (the default) keeps everything for ever.
QUICKBG_RETENTION_DAYS = env_int("QUICKBG_RETENTION_DAYS", 0, minimum=0)
# Django refuses request bodies past this; a little over the image limit for multipart overhead.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(QUICKBG_MAX_UPLOAD_MB * 1024 * 1024) + 1024 * 1024
# POST /batches takes up to QUICKBG_MAX_BATCH_FILES images (or one zip of them) and at most
# QUICKBG_MAX_BATCH_MB in all (the files' sizes, or the zip's size and its total uncompressed
# size). A proxy or body-size limit in front of the service must allow QUICKBG_MAX_BATCH_MB.
QUICKBG_MAX_BATCH_FILES = env_int("QUICKBG_MAX_BATCH_FILES", 100, minimum=1)
QUICKBG_MAX_BATCH_MB = env_float("QUICKBG_MAX_BATCH_MB", 200, minimum=0.001)
# A zip member whose size is more than this many times its compressed size is refused unread.
QUICKBG_ZIP_MAX_RATIO = env_int("QUICKBG_ZIP_MAX_RATIO", 100, minimum=1)
# The API refuses more than one file per upload, and more than QUICKBG_MAX_BATCH_FILES per batch,
# with a clear message; Django's own cap only stops absurd requests before they are parsed.
DATA_UPLOAD_MAX_NUMBER_FILES = QUICKBG_MAX_BATCH_FILES + 10
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE
# Any request body: refused over this (413) before it is read, cut off while streaming
# (removal/api/limits.py). The margin lets a file a little over the image limit get the
# validator's message instead. POST /api/v1/batches allows QUICKBG_MAX_BATCH_MB + 5 MB.
QUICKBG_MAX_BODY_MB = env_float("QUICKBG_MAX_BODY_MB", QUICKBG_MAX_UPLOAD_MB + 5, minimum=0.001)
# CappedUploadHandler stops file parts at the body limit, ahead of Django's own handlers.
FILE_UPLOAD_HANDLERS = ["removal.api.limits.CappedUploadHandler",
                        *global_settings.FILE_UPLOAD_HANDLERS]

# --- Abuse limits ---------------------------------------------------------------------------------
# Rates per user, counted in Redis: uploads; /v1.0/removebg in megapixel-images (remove.bg's).
QUICKBG_UPLOAD_RATE = env_rate("QUICKBG_UPLOAD_RATE", "60/min")
QUICKBG_REMOVEBG_RATE = env_rate("QUICKBG_REMOVEBG_RATE", "500/min")
# Bearer token for GET /metrics (Prometheus); empty = the endpoint is off (404).
QUICKBG_METRICS_TOKEN = env_str("QUICKBG_METRICS_TOKEN")
# An Idempotency-Key with no answer after this long belongs to a request that died; a retry with
# the key takes it over. Keep it above the web server's request timeout.
QUICKBG_IDEMPOTENCY_PENDING_SECONDS = env_int("QUICKBG_IDEMPOTENCY_PENDING_SECONDS", 120, minimum=1)
QUICKBG_MAX_QUEUED_TASKS = env_int("QUICKBG_MAX_QUEUED_TASKS", 20, minimum=1)
# Batch members have their own cap (unfinished members across all of a user's batches): a batch
# never counts against QUICKBG_MAX_QUEUED_TASKS, and many batches cannot exceed this one.
QUICKBG_MAX_QUEUED_BATCH_TASKS = env_int("QUICKBG_MAX_QUEUED_BATCH_TASKS", 500, minimum=1)
QUICKBG_AUTH_RATE = env_rate("QUICKBG_AUTH_RATE", "20/min")  # token requests per client address
# GET /api/v1/health per client address: generous, load balancers poll it.
QUICKBG_HEALTH_RATE = env_rate("QUICKBG_HEALTH_RATE", "600/min")
# 0 (the default) means "no proxy": the client is REMOTE_ADDR and X-Forwarded-For is ignored.
# Never None: DRF would then key clients by the X-Forwarded-For header the client itself sends.
NUM_PROXIES = env_int("NUM_PROXIES", 0, minimum=0)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "quickbg",
    }
}

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        # X-Api-Key: a long-lived key from /api/v1/api-keys, authenticating as its user.
        "accounts.authentication.APIKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "removal.api.pagination.KeysetPagination",
    "PAGE_SIZE": env_int("QUICKBG_PAGE_SIZE", 20, minimum=1),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "removal.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "NUM_PROXIES": NUM_PROXIES,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_ACCESS_SECONDS", 300, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("JWT_REFRESH_SECONDS", 86400, minimum=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "SIGNING_KEY": env_str("JWT_SIGNING_KEY") or SECRET_KEY,
    "ALGORITHM": "HS256",
    # Refresh tokens carry the sign-in time; refreshing cannot outlast the session's maximum age.
    "TOKEN_OBTAIN_SERIALIZER": "accounts.tokens.SessionTokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "accounts.tokens.SessionTokenRefreshSerializer",
    "USER_AUTHENTICATION_RULE": "accounts.tokens.session_allowed",
}
# A session (one sign-in) ends this many days after sign-in however often it is refreshed.
QUICKBG_SESSION_MAX_AGE_DAYS = env_int("QUICKBG_SESSION_MAX_AGE_DAYS", 30, minimum=1)
SPECTACULAR_SETTINGS = {
    "TITLE": "QuickBG API",
    "DESCRIPTION": "Self-hosted background removal: upload, poll the task, download a PNG.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs pages' assets come with drf-spectacular-sidecar (pinned by its version).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- Content-Security-Policy (django-csp; quickbg/csp_policy.py) -------------------------------
# QUICKBG_CSP_IMG_SRC: more origins for images (e.g. a CDN or public S3 host before the bucket).
CONTENT_SECURITY_POLICY = csp_policy.policy(
    s3_endpoint=(AWS_S3_ENDPOINT_URL or "") if AWS_STORAGE_BUCKET_NAME else None,
    extra_img_src=env_list("QUICKBG_CSP_IMG_SRC", []),
)
QUICKBG_CSP_PATH_UPDATES = csp_policy.PATH_UPDATES

# --- Logging ----------------------------------------------------------------------------------
# LOG_FORMAT=json (production: one JSON object per event) or plain (development). Task metrics
# also go to QUICKBG_METRICS_LOG, one JSON line each (quickbg/logs.py).
QUICKBG_METRICS_LOG = Path(env_str("QUICKBG_METRICS_LOG", str(BASE_DIR / "logs" / "metrics.log")))
try:
    QUICKBG_METRICS_LOG.parent.mkdir(parents=True, exist_ok=True)
except OSError:  # read-only: the handler reports the failure on the first line it writes
    pass
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOG_FORMAT = env_choice("LOG_FORMAT", "plain" if DEBUG else "json", ("plain", "json"))
LOGGING = logs.logging_config(level=LOG_LEVEL, console_format=LOG_FORMAT,
                              metrics_file=QUICKBG_METRICS_LOG)

# --- Production hardening (`manage.py check --deploy` passes with DEBUG off) ------------------
# TLS posture, one of (README, "Deploy"):
# - HTTPS, ended at a reverse proxy (docker-compose's Caddy, deploy/nginx.conf): set
#   SECURE_PROXY_SSL_HEADER=true (the proxy sets X-Forwarded-Proto) and NUM_PROXIES=1.
# - Plain HTTP on purpose (a private network, a trial): QUICKBG_INSECURE_HTTP=true. Cookies lose
#   the Secure flag so the admin sign-in works over http://, there is no redirect and no HSTS,
#   and every process logs a warning at start-up.
QUICKBG_INSECURE_HTTP = env_bool("QUICKBG_INSECURE_HTTP", False)
if not DEBUG and QUICKBG_INSECURE_HTTP:
    SECURE_SSL_REDIRECT = False
    SECURE_HSTS_SECONDS = 0
    SESSION_COOKIE_SECURE = False
    CSRF_COOKIE_SECURE = False
    logging.getLogger("quickbg.settings").warning(
        "QUICKBG_INSECURE_HTTP=true: serving plain HTTP; sign-in cookies and tokens cross the "
        "network unencrypted. Put a TLS proxy in front and unset it for production."
    )
elif not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Health checks from a load balancer come over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
