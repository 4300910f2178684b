"""QuickBG settings: one module, driven by environment variables.

Every variable is listed, with its default and meaning, in the README's configuration table.
Defaults are for trying QuickBG locally (SQLite, local files, DEBUG on); production sets
``DEBUG=false`` plus ``SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL`` and the S3 variables.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from quickbg.env import env_bool, env_float, env_int, env_list, env_str

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
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
PORT = env_int("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "django_rq",
    "accounts",
    "removal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files for the web page and the admin under gunicorn (no separate web server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
except Exception as exc:  # dj-database-url raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

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
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(STATE_DIR / "static")))
try:  # whitenoise serves from it after collectstatic, and warns when it is missing
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:  # a read-only image: collectstatic made it at build time
    pass
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# --- Redis and the queue ------------------------------------------------------------------------
# Empty REDIS_URL means "local mode": `make run` starts a redis-server and sets it.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
QUICKBG_QUEUE = env_str("QUICKBG_QUEUE", "quickbg")
RQ_QUEUES = {
    QUICKBG_QUEUE: {
        "URL": REDIS_URL,
        "DEFAULT_TIMEOUT": env_int("QUICKBG_JOB_TIMEOUT", 300, minimum=10),
        # JSON, not pickle: the job's only argument is a task id.
        "SERIALIZER": "rq.serializers.JSONSerializer",
    },
}
# Batch members run on their own queue, below the interactive one (workers take it only when
# the interactive queue is empty): one user's batch never holds up another user's single upload.
QUICKBG_BATCH_QUEUE = f"{QUICKBG_QUEUE}-batch"
RQ_QUEUES[QUICKBG_BATCH_QUEUE] = dict(RQ_QUEUES[QUICKBG_QUEUE])
# Enqueue only after the surrounding transaction commits (django-rq 4's default, made explicit).
# The queue and worker classes live in removal/queue.py and removal/worker.py (their docstrings
# say why): Redis down at enqueue leaves the task for the reconciler, and the worker keeps the
# model loaded between jobs.
RQ = {
    "COMMIT_MODE": "on_db_commit",
    "QUEUE_CLASS": "removal.queue.ResilientQueue",
    "WORKER_CLASS": "removal.worker.QuickBGWorker",
}

# --- Storage --------------------------------------------------------------------------------
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME")
MEDIA_ROOT = Path(env_str("QUICKBG_MEDIA_ROOT", str(STATE_DIR / "media")))
if AWS_STORAGE_BUCKET_NAME:
    AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL") or None
    AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", "us-east-1")
    AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID") or None
    AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY") or None
    AWS_S3_ADDRESSING_STYLE = env_str("AWS_S3_ADDRESSING_STYLE", "path")
    AWS_S3_SIGNATURE_VERSION = "s3v4"
    AWS_DEFAULT_ACL = None
    AWS_S3_FILE_OVERWRITE = True
    AWS_QUERYSTRING_AUTH = True
    _files_backend = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "endpoint_url": AWS_S3_ENDPOINT_URL,
            "region_name": AWS_S3_REGION_NAME,
            "access_key": AWS_ACCESS_KEY_ID,
            "secret_key": AWS_SECRET_ACCESS_KEY,
            "addressing_style": AWS_S3_ADDRESSING_STYLE,
            "signature_version": "s3v4",
            "file_overwrite": True,
            "querystring_auth": True,
        },
    }
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
QUICKBG_MODELS_DIR = Path(
    env_str("QUICKBG_MODELS_DIR", str(Path.home() / ".cache" / "quickbg" / "models"))
)
QUICKBG_MODEL = env_str("QUICKBG_MODEL", "isnet-general-use")
QUICKBG_ORT_THREADS = env_int("QUICKBG_ORT_THREADS", 0, minimum=0)  # 0 = one per core

# --- Validation and task limits -------------------------------------------------------------------
QUICKBG_MAX_UPLOAD_MB = env_float("QUICKBG_MAX_UPLOAD_MB", 10, minimum=0.001)
QUICKBG_MAX_DIMENSION = env_int("QUICKBG_MAX_DIMENSION", 4096, minimum=1)
QUICKBG_MIN_DIMENSION = env_int("QUICKBG_MIN_DIMENSION", 50, minimum=1)
QUICKBG_MAX_RETRIES = env_int("QUICKBG_MAX_RETRIES", 3, minimum=0)
QUICKBG_RETRY_DELAY = env_int("QUICKBG_RETRY_DELAY", 60, minimum=0)
QUICKBG_JOB_TIMEOUT = RQ_QUEUES[QUICKBG_QUEUE]["DEFAULT_TIMEOUT"]
QUICKBG_URL_EXPIRY = env_int("QUICKBG_URL_EXPIRY", 3600, minimum=1)
# Workers re-enqueue tasks no live job holds every N s (0 = never), ignoring ones touched recently.
QUICKBG_RECONCILE_INTERVAL = env_int("QUICKBG_RECONCILE_INTERVAL", 30, minimum=0)
QUICKBG_RECONCILE_GRACE = env_int("QUICKBG_RECONCILE_GRACE", 30, minimum=0)
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

# --- Abuse limits ---------------------------------------------------------------------------------
# Upload rate per user (DRF throttle, counted in Redis so every web process shares it) and a cap
# on each user's unfinished tasks. NUM_PROXIES: how many reverse proxies sit in front of the
# service (DRF uses it to find the client address in X-Forwarded-For).
QUICKBG_UPLOAD_RATE = env_str("QUICKBG_UPLOAD_RATE", "60/min")
# Bearer token for GET /metrics (Prometheus); empty = the endpoint is off (404).
QUICKBG_METRICS_TOKEN = env_str("QUICKBG_METRICS_TOKEN")
QUICKBG_MAX_QUEUED_TASKS = env_int("QUICKBG_MAX_QUEUED_TASKS", 20, minimum=1)
# Batch members have their own cap (unfinished members across all of a user's batches): a batch
# never counts against QUICKBG_MAX_QUEUED_TASKS, and many batches cannot exceed this one.
QUICKBG_MAX_QUEUED_BATCH_TASKS = env_int("QUICKBG_MAX_QUEUED_BATCH_TASKS", 500, minimum=1)
QUICKBG_AUTH_RATE = env_str("QUICKBG_AUTH_RATE", "20/min")  # token requests per client address
NUM_PROXIES = env_int("NUM_PROXIES", 0, minimum=0) or None
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
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "removal.api.pagination.Pagination",
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
}
SPECTACULAR_SETTINGS = {
    "TITLE": "QuickBG API",
    "DESCRIPTION": "Self-hosted background removal: upload, poll the task, download a PNG.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Logging ----------------------------------------------------------------------------------
# LOG_FORMAT=json (production: one JSON object per event) or plain (development).
# One JSON line per finished task attempt goes to the ``quickbg.metrics`` logger, which writes to
# the console and appends to QUICKBG_METRICS_LOG. WatchedFileHandler reopens the file when
# logrotate moves it, so rotation is logrotate's job (README, "Monitoring").
QUICKBG_METRICS_LOG = Path(env_str("QUICKBG_METRICS_LOG", str(BASE_DIR / "logs" / "metrics.log")))
try:
    QUICKBG_METRICS_LOG.parent.mkdir(parents=True, exist_ok=True)
except OSError:  # read-only: the handler reports the failure on the first line it writes
    pass
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "quickbg.logs.RedactSecrets"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
        },
        "message": {"format": "%(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                    "filters": ["redact"]},
        "metrics_file": {"class": "logging.handlers.WatchedFileHandler",
                         "filename": str(QUICKBG_METRICS_LOG), "delay": True,
                         "encoding": "utf-8", "formatter": "message", "filters": ["redact"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "rq.worker": {"level": LOG_LEVEL},
        "quickbg.metrics": {"handlers": ["console", "metrics_file"], "level": "INFO",
                            "propagate": False},
        # Replaces Django's default handlers (which would print request lines unredacted).
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # Request lines of the development server: same handler, so the same redaction.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# --- Production hardening (`manage.py check --deploy` passes with DEBUG off) ------------------
if not DEBUG:
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
