"""removal.modelstore, the model catalogue: where the weights are, and their checksums."""

from __future__ import annotations

import os

import pytest

from removal import modelstore


def test_corrupt_weights_are_detected(tmp_path):
    spec = modelstore.MODELS[modelstore.DEFAULT_MODEL]
    path = tmp_path / spec.filename
    path.write_bytes(b"\0" * 10)
    with pytest.raises(modelstore.ModelError, match="fails its sha256 check"):
        modelstore.verify(tmp_path)


def test_model_file_is_where_the_settings_say(settings):
    assert os.path.isfile(modelstore.model_path(settings.QUICKBG_MODELS_DIR))
