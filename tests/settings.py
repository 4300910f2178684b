"""Test settings: the real settings, plus a fast hasher and an isolated queue and media folder.

The database and Redis are whatever ``DATABASE_URL`` / ``REDIS_URL`` say; CI points them at the
PostgreSQL and Redis running on the machine (see ``.ci/run``) and refuses to fall back to SQLite.
"""

import os
import tempfile

from quickbg.settings import *  # noqa: F403
from quickbg.settings import BASE_DIR, DATABASES, RQ_QUEUES

if os.environ.get("CI") and DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError("CI must run the tests against PostgreSQL: set DATABASE_URL")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

QUICKBG_QUEUE = f"quickbg-test-{os.getpid()}"
RQ_QUEUES = {QUICKBG_QUEUE: next(iter(RQ_QUEUES.values()))}
MEDIA_ROOT = tempfile.mkdtemp(prefix="quickbg-test-media-")
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AWS_STORAGE_BUCKET_NAME = ""
QUICKBG_METRICS_LOG = BASE_DIR / "logs" / "test-metrics.log"
QUICKBG_ORT_THREADS = 2

QUICKBG_UPLOAD_RATE = "10000/min"
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": RQ_QUEUES[QUICKBG_QUEUE]["URL"],
        "KEY_PREFIX": QUICKBG_QUEUE,
    }
}
