"""``QUICKBG_ORT_PROVIDERS``: parsing, the fallback when a provider is not installed, and the
provider list the real model session ends up with. GPU itself is not exercised here (no GPU on
the CI machines): the fallback is what these machines can test."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from removal import modelstore
from removal.pipeline import providers
from removal.pipeline.segment import Segmenter

KNOWN = ort.get_all_providers()
CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ["CPUExecutionProvider"]),
        ("", ["CPUExecutionProvider"]),
        (" , ", ["CPUExecutionProvider"]),
        ("CUDAExecutionProvider,CPUExecutionProvider", WITH_CUDA),
        ("cuda, CPU", WITH_CUDA),  # case and the suffix do not matter
        ("CPU,cpuexecutionprovider", ["CPUExecutionProvider"]),  # no repeats
    ],
)
def test_provider_list_is_parsed_in_order(raw, expected):
    assert providers.parse(raw, KNOWN) == expected


def test_unknown_provider_is_refused_naming_the_known_ones():
    with pytest.raises(providers.ProviderError, match="unknown provider CUDAExcutionProvider; "
                                                       "onnxruntime knows .*CPUExecutionProvider"):
        providers.parse("CUDAExcutionProvider,CPUExecutionProvider", KNOWN)


def test_unavailable_provider_falls_back_to_the_rest_of_the_list():
    assert providers.resolve("CUDAExecutionProvider,CPUExecutionProvider", CPU_ONLY, KNOWN) == (
        ["CPUExecutionProvider"], ["CUDAExecutionProvider"])
    # With the GPU package installed the same value keeps CUDA first.
    assert providers.resolve("cuda,cpu", WITH_CUDA, KNOWN) == (WITH_CUDA, [])


def test_nothing_available_is_refused():
    with pytest.raises(providers.ProviderError, match="none of CUDAExecutionProvider is available"):
        providers.resolve("CUDAExecutionProvider", CPU_ONLY, KNOWN)


@pytest.mark.model
def test_model_session_uses_the_fallback_and_says_so(monkeypatch, caplog, settings):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: there is nothing to fall back from")
    monkeypatch.setenv("QUICKBG_ORT_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")
    path = modelstore.verify(settings.QUICKBG_MODELS_DIR)
    with caplog.at_level(logging.WARNING, logger="removal.pipeline.segment"):
        segmenter = Segmenter(path, 1)
    assert segmenter.providers == ["CPUExecutionProvider"]
    assert "ONNX Runtime providers CUDAExecutionProvider are not available here; using " \
           "CPUExecutionProvider" in caplog.text
