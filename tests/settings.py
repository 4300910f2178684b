"""Test settings: the real settings, plus a fast hasher and an isolated queue and media folder.

The database and Redis are whatever ``DATABASE_URL`` / ``REDIS_URL`` say; CI points them at the
PostgreSQL and Redis running on the machine (see ``.ci/run``) and refuses to fall back to SQLite.
"""

import os
import tempfile

# Before the real settings read it; subprocesses started by tests inherit it.
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault(
    "QUICKBG_METRICS_LOG",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "logs",
                 "test-metrics.log"),
)

from quickbg.settings import *  # noqa: E402, F403
from quickbg.settings import DATABASES, RQ_QUEUES  # noqa: E402

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError(
        "The tests run against PostgreSQL, never SQLite: set DATABASE_URL, e.g. "
        "postgres://postgres@127.0.0.1:5432/quickbg (`make test` does)"
    )

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

QUICKBG_QUEUE = f"quickbg-test-{os.getpid()}"
QUICKBG_BATCH_QUEUE = f"{QUICKBG_QUEUE}-batch"
RQ_QUEUES = {QUICKBG_QUEUE: next(iter(RQ_QUEUES.values()))}
RQ_QUEUES[f"{QUICKBG_QUEUE}-webhooks"] = {**RQ_QUEUES[QUICKBG_QUEUE], "DEFAULT_TIMEOUT": 60}
RQ_QUEUES[QUICKBG_BATCH_QUEUE] = dict(RQ_QUEUES[QUICKBG_QUEUE])
MEDIA_ROOT = tempfile.mkdtemp(prefix="quickbg-test-media-")
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "allow_overwrite": True},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AWS_STORAGE_BUCKET_NAME = ""
QUICKBG_ORT_THREADS = 2

QUICKBG_UPLOAD_RATE = "10000/min"
QUICKBG_AUTH_RATE = "100000/min"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": RQ_QUEUES[QUICKBG_QUEUE]["URL"],
        "KEY_PREFIX": QUICKBG_QUEUE,
    }
}
