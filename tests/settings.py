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

# The tests' tiny models (tests/tiny_models.py) join the catalogue through the same setting an
# operator uses for their own files; built once per test run, inherited by subprocesses.
if not os.environ.get("QUICKBG_EXTRA_MODELS"):
    from tests.tiny_models import build_catalogue

    os.environ["QUICKBG_EXTRA_MODELS"] = str(
        build_catalogue(tempfile.mkdtemp(prefix="quickbg-test-tiny-models-")))

from quickbg import backends  # noqa: E402
from quickbg.settings import *  # noqa: E402, F403
from quickbg.settings import DATABASES, RQ_QUEUES  # noqa: E402
from removal import modelstore  # noqa: E402

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise RuntimeError(
        "The tests run against PostgreSQL, never SQLite: set DATABASE_URL, e.g. "
        "postgres://postgres@127.0.0.1:5432/quickbg (`make test` does)"
    )

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

QUICKBG_QUEUE = f"quickbg-test-{os.getpid()}"
QUICKBG_BATCH_QUEUE = f"{QUICKBG_QUEUE}-batch"
_tasks = next(iter(RQ_QUEUES.values()))
RQ_QUEUES = backends.rq_queues(url=_tasks["URL"], name=QUICKBG_QUEUE,
                               job_timeout=_tasks["DEFAULT_TIMEOUT"],
                               models=list(modelstore.MODELS))
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
