"""Which model a new task may use, and which models the deployment serves right now.

The catalogue (``removal.modelstore``) says what exists; the live workers say what runs: each
advertises its models beside its liveness key (``queue.serves_key``, ``run_worker --models``).
Services call ``model_require`` before they create a task, so a task never waits for ever on a
queue no worker takes:

* an unknown name is bad input (400), and so is a non-commercial model the operator has not
  allowed (``QUICKBG_ALLOW_NONCOMMERCIAL_MODELS``);
* the default model (``QUICKBG_MODEL``) is always accepted: every worker started without
  ``--models`` serves it when installed, and when no worker runs at all the task waits like any
  other (the health check and ``quickbg_model_workers`` show the outage);
* any other model is accepted only while some live worker serves it; otherwise
  ``ModelUnavailable`` (503) says which command starts one.

remove.bg's ``type`` maps to a model through ``QUICKBG_TYPE_MODELS`` (``model_for_removebg_type``).
"""

from __future__ import annotations

import logging

import redis.exceptions
from django.conf import settings

from removal import modelstore, queue
from removal.errors import InvalidInput, ModelUnavailable

logger = logging.getLogger(__name__)


def unknown_model_message(name: str) -> str:
    return (f"Unknown model {name!r}; GET /api/v1/models lists the models "
            f"({', '.join(sorted(modelstore.MODELS))})")


def model_require(name: str | None) -> str:
    """The model a new task runs: ``name`` or the default, checked as the module says."""
    name = name or settings.QUICKBG_MODEL
    if name not in modelstore.MODELS:
        raise InvalidInput(unknown_model_message(name))
    try:
        modelstore.check_licence(
            name, allow_noncommercial=settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS)
    except modelstore.ModelError as exc:
        raise InvalidInput(str(exc)) from None
    if name == settings.QUICKBG_MODEL:
        return name
    try:
        served = queue.served_models()
    except redis.exceptions.RedisError as exc:  # the enqueue fails too; the reconciler retries
        logger.warning("cannot read which models are served (%s); accepting %s", exc, name)
        return name
    if served.get(name):
        return name
    raise ModelUnavailable(
        f"No running worker serves the model {name}. Start one with `python manage.py "
        f"run_worker --models {name}` (its weights first: `python manage.py fetch_model --model "
        f"{name}`), or choose a served model (GET /api/v1/models lists them)."
    )


def model_listing() -> dict:
    """``GET /api/v1/models``: every catalogue model, whether it is installed (in this
    process's models folder, or on a live worker serving it) and served by a live worker."""
    try:
        served = queue.served_models()
    except redis.exceptions.RedisError:
        served = None
    allow = settings.QUICKBG_ALLOW_NONCOMMERCIAL_MODELS
    models = []
    for name, spec in sorted(modelstore.MODELS.items()):
        workers = None if served is None else served.get(name, 0)
        models.append({
            "name": name,
            "purpose": spec.purpose,
            "licence": spec.licence,
            "commercial_use": spec.commercial_use,
            "allowed": spec.commercial_use or allow,
            "engine": spec.engine,
            "input_size": spec.input_size,
            "memory_mb": spec.memory_mb,
            "checksum": spec.checksum,
            "size": spec.size,
            "approx_mb": spec.approx_mb,
            "installed": bool(workers) or modelstore.is_present(settings.QUICKBG_MODELS_DIR,
                                                                name),
            "served": None if workers is None else workers > 0,
            "workers": workers,
            "default": name == settings.QUICKBG_MODEL,
        })
    return {"default_model": settings.QUICKBG_MODEL, "models": models,
            "not_listed": dict(modelstore.EXCLUDED)}


def model_for_removebg_type(kind: str | None) -> str:
    """remove.bg's ``type`` (``person``, ``product``, ``car``, ``animal``, ``graphic``,
    ``auto``) -> the model configured for it in ``QUICKBG_TYPE_MODELS``, else the default."""
    return modelstore.model_for_type(kind, mapping=settings.QUICKBG_TYPE_MODELS,
                                     default=settings.QUICKBG_MODEL)
