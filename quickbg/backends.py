"""The backing services' settings, built from their URLs: the database, Redis and the RQ queues.

Plain functions the settings module calls (no Django settings are read here), each failing with
``ImproperlyConfigured`` and the variable's name on a bad value.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from quickbg.env import check_url, env_str, env_url

REDIS_SCHEMES = ("redis", "rediss", "unix")
# JSON, not pickle: a job's only argument is an id. The one place the serializer is named.
RQ_SERIALIZER = "rq.serializers.JSONSerializer"


def database(url: str, *, sqlite_timeout: int) -> dict:
    """``DATABASES["default"]`` for ``url`` (PostgreSQL in production, SQLite for `make run`)."""
    try:
        config = dj_database_url.parse(url, conn_max_age=60)
    except Exception as exc:  # dj-database-url raises several types for a malformed URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # `make run`'s web process and its workers write at once. WAL lets readers and one
        # writer work side by side; IMMEDIATE takes the write lock when a transaction starts, so
        # a writer waits (up to the timeout, in seconds) for its turn instead of failing with
        # "database is locked" when a read inside a transaction turns into a write.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": sqlite_timeout,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
            **config.get("OPTIONS", {}),
        }
    return config


def redis_url(url_file: Path) -> str:
    """``REDIS_URL``; when it is unset, the one `make run` wrote to ``url_file``, if any.

    Empty REDIS_URL means "local mode": `make run` starts a redis-server, sets its URL for its
    processes and writes it to ``url_file``, so every other process (a `manage.py` command run
    by hand) finds it too. Otherwise the default is the usual local Redis.
    """
    if env_str("REDIS_URL").strip():
        return env_url("REDIS_URL", "", REDIS_SCHEMES)
    if url_file.is_file():
        return check_url(f"REDIS_URL (read from {url_file})", url_file.read_text().strip(),
                         REDIS_SCHEMES)
    return "redis://127.0.0.1:6379/0"


def model_queue(name: str, model: str) -> str:
    """The queue of one model's tasks: ``<name>:<model>`` (``removal.queue.task_queue_name``
    is the public way to get it; it lives here because settings build ``RQ_QUEUES`` from it)."""
    return f"{name}:{model}"


def ort_providers_setting() -> list[str]:
    """``QUICKBG_ORT_PROVIDERS`` (removal/pipeline/providers.py has the rule): an unknown name
    stops start-up; an unavailable one is dropped (the worker logs a warning) and the rest is
    used; none left stops start-up. onnxruntime is only imported when the variable is set."""
    from removal.pipeline import providers as ort_providers

    if not env_str(ort_providers.ENV_VAR).strip():
        return list(ort_providers.DEFAULT)
    try:
        return ort_providers.from_environment()[0]
    except ort_providers.ProviderError as exc:
        raise ImproperlyConfigured(f"{ort_providers.ENV_VAR}: {exc}") from None


def register_extra_models(path: str) -> str:
    """``QUICKBG_EXTRA_MODELS``: add the JSON file's entries to the catalogue
    (``modelextra.load_extra`` documents them); a bad file stops start-up."""
    from removal import modelextra, modelstore

    path = path.strip()
    if path:
        try:
            modelstore.register(modelextra.load_extra(path))
        except modelstore.ModelError as exc:
            raise ImproperlyConfigured(f"QUICKBG_EXTRA_MODELS: {exc}") from None
    return path


def type_models(raw: str) -> dict[str, str]:
    """``QUICKBG_TYPE_MODELS``: remove.bg's ``type`` -> model (``modelstore.parse_type_models``)."""
    from removal import modelstore

    try:
        return modelstore.parse_type_models(raw)
    except modelstore.ModelError as exc:
        raise ImproperlyConfigured(f"QUICKBG_TYPE_MODELS: {exc}") from None


def rq_queues(*, url: str, name: str, job_timeout: int, models: list[str] | None = None) -> dict:
    """django-rq's ``RQ_QUEUES``: the task queue, its batch queue below it, and webhooks.

    Batch members run on ``<name>-batch``, which workers take only when the interactive queue is
    empty, so one user's batch never holds up another user's single upload. Webhook deliveries
    have ``<name>-webhooks``, so a slow receiver never delays removal; every worker drains it
    after the task queues (`run_worker --webhooks-only` runs a worker for it alone).
    """
    tasks = {"URL": url, "DEFAULT_TIMEOUT": job_timeout, "SERIALIZER": RQ_SERIALIZER}
    queues = {
        name: tasks,
        f"{name}-webhooks": {**tasks, "DEFAULT_TIMEOUT": 60},
        f"{name}-batch": dict(tasks),
    }
    # One interactive and one batch queue per model (default: the whole catalogue).
    if models is None:
        from removal import modelstore

        models = list(modelstore.MODELS)
    for model in models:
        queues[model_queue(name, model)] = dict(tasks)
        queues[model_queue(f"{name}-batch", model)] = dict(tasks)
    return queues


def env_tls_verify(name: str) -> bool | str | None:
    """TLS verification of an endpoint: unset or true = the system CAs (None), false = none, or
    the path of a CA bundle (docker-compose: the root of its proxy's internal CA)."""
    raw = env_str(name).strip()
    if raw.lower() in ("", "true", "1", "yes", "on"):
        return None
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    # Not checked for existence here: under docker-compose the proxy writes it after start-up.
    return raw
