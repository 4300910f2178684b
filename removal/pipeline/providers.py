"""Which ONNX Runtime execution providers run the model: ``QUICKBG_ORT_PROVIDERS``.

The value is a comma-separated preference list, in the order ONNX Runtime tries them, e.g.
``CUDAExecutionProvider,CPUExecutionProvider`` with ``onnxruntime-gpu`` installed. Names match
case-insensitively and the ``ExecutionProvider`` suffix may be left out (``cuda,cpu``). Unset or
empty means ``CPUExecutionProvider``.

The rule, checked when settings load (every process, before it serves or takes a job):

* a name ONNX Runtime does not know at all (a typo) stops start-up, listing the known names;
* a known provider this installation cannot use (CUDA without ``onnxruntime-gpu``, or without
  the CUDA libraries) is dropped with a warning, and the rest of the list is used, so
  ``CUDAExecutionProvider,CPUExecutionProvider`` falls back to the CPU;
* if nothing is left, start-up stops, listing the available providers.

Plain Python (no Django import), like the rest of the pipeline.
"""

from __future__ import annotations

import os

ENV_VAR = "QUICKBG_ORT_PROVIDERS"
DEFAULT = ("CPUExecutionProvider",)
_SUFFIX = "ExecutionProvider"


class ProviderError(ValueError):
    """``QUICKBG_ORT_PROVIDERS`` names no provider this onnxruntime can use."""


def parse(raw: str | None, known: list[str]) -> list[str]:
    """The requested providers as ONNX Runtime spells them, in order, without repeats."""
    names = [item.strip() for item in (raw or "").split(",") if item.strip()]
    if not names:
        return list(DEFAULT)
    by_folded = {}
    for name in known:
        by_folded[name.casefold()] = name
        by_folded[name.removesuffix(_SUFFIX).casefold()] = name
    unknown = [name for name in names if name.casefold() not in by_folded]
    if unknown:
        raise ProviderError(
            f"unknown provider {', '.join(unknown)}; onnxruntime knows {', '.join(known)}"
        )
    wanted: list[str] = []
    for name in names:
        canonical = by_folded[name.casefold()]
        if canonical not in wanted:
            wanted.append(canonical)
    return wanted


def resolve(raw: str | None, available: list[str], known: list[str]) -> tuple[list[str], list[str]]:
    """``(providers to use, requested providers dropped because they are unavailable)``."""
    wanted = parse(raw, known)
    usable = [name for name in wanted if name in available]
    dropped = [name for name in wanted if name not in available]
    if not usable:
        raise ProviderError(
            f"none of {', '.join(wanted)} is available in this onnxruntime installation "
            f"(available: {', '.join(available)}); install the matching onnxruntime package "
            f"or add CPUExecutionProvider as a fallback"
        )
    return usable, dropped


def from_environment() -> tuple[list[str], list[str]]:
    """``resolve`` for this process's ``QUICKBG_ORT_PROVIDERS`` and installed onnxruntime."""
    import onnxruntime as ort

    return resolve(os.environ.get(ENV_VAR), ort.get_available_providers(),
                   ort.get_all_providers())
