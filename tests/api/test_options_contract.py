"""One options contract: every field of ``pipeline.options.Options`` (with its metadata) is
what the upload and batch serializers, the API schema, ``GET /api/v1/options`` and the remove.bg
endpoint take. A field added to ``Options`` without its metadata, or not reaching one of these
surfaces, fails here."""

from __future__ import annotations

from dataclasses import fields

import pytest
from rest_framework.test import APIClient

from removal.api import removebg
from removal.api.serializers import BatchCreateSerializer, UploadCreateSerializer
from removal.models import Task
from removal.pipeline.options import Options
from tests.api.test_removebg import key, keyed  # noqa: F401 - fixture
from tests.helpers import named
from tests.images import make_image

NAMES = Options.names()
# A value each kind of option refuses (each string option's own parser refuses this one).
INVALID = {"choice": "not-a-choice", "boolean": "maybe", "integer": "-1", "string": "not valid"}
SPECS = {spec.name: spec for spec in Options.contract()}


def test_every_field_of_options_carries_its_contract():
    assert [f.name for f in fields(Options)] == NAMES == list(SPECS)
    for spec in SPECS.values():
        assert spec.help.strip(), spec.name
        assert spec.type in INVALID, spec.name
        assert (spec.choices is not None) == (spec.type == "choice"), spec.name
        assert (spec.minimum is not None) == (spec.type == "integer"), spec.name
    # The defaults are valid values, as parsing nothing gives them.
    assert Options.parse({}) == Options()
    assert Options.parse({}).to_dict() == {name: spec.default for name, spec in SPECS.items()}


@pytest.mark.parametrize("serializer", [UploadCreateSerializer, BatchCreateSerializer])
def test_the_upload_and_batch_serializers_take_every_option(serializer):
    taken = serializer().fields
    assert set(NAMES) <= set(taken)
    assert {name: taken[name].help_text for name in NAMES} == {
        name: spec.help for name, spec in SPECS.items()}


@pytest.mark.django_db
def test_the_schema_documents_every_option_of_uploads_and_batches():
    schema = APIClient().get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    for component in ("UploadCreateRequest", "BatchCreateRequest"):
        properties = schema["components"]["schemas"][component]["properties"]
        assert {name: properties[name]["description"] for name in NAMES} == {
            name: spec.help for name, spec in SPECS.items()}, component
    assert "/api/v1/options" in schema["paths"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", NAMES)
def test_post_uploads_hands_every_option_to_the_parser(user, client_for, empty_queue, name):
    response = client_for(user).post(
        "/api/v1/uploads", {"file": named(make_image()), name: INVALID[SPECS[name].type]},
        format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{name}: ")
    assert Task.objects.count() == 0 and empty_queue.count == 0


@pytest.mark.django_db
def test_options_endpoint_lists_the_contract_without_signing_in():
    response = APIClient().get("/api/v1/options")
    assert response.status_code == 200
    listed = response.json()["options"]
    assert [entry["name"] for entry in listed] == NAMES
    for entry in listed:
        spec = SPECS[entry["name"]]
        assert entry == {**spec.to_dict(), "choices": list(spec.choices or []) or None}
    by_name = {entry["name"]: entry for entry in listed}
    assert by_name["format"]["choices"] == ["png", "webp", "jpg", "zip", "auto"]
    assert by_name["format"]["default"] == "png" and by_name["crop"]["default"] is True
    assert (by_name["alpha_matting_erode_size"]["minimum"],
            by_name["alpha_matting_erode_size"]["maximum"]) == (0, 100)
    assert by_name["refine"]["removebg"] is False and by_name["decontaminate"]["removebg"] is True


def test_the_removebg_endpoint_takes_the_options_marked_for_it():
    marked = [name for name, spec in SPECS.items() if spec.removebg]
    assert list(removebg.OPTION_NAMES) == marked
    assert set(marked) <= set(removebg.RemoveBgRequestSerializer().fields)
    assert set(removebg.REMOVEBG_DEFAULTS) <= set(marked)
    assert set(removebg.REMOVEBG_HELP) == set(removebg.REMOVEBG_DEFAULTS)
    unmarked = set(NAMES) - set(marked)
    assert unmarked == {"refine", "alpha_matting", "alpha_matting_foreground_threshold",
                        "alpha_matting_background_threshold", "alpha_matting_erode_size"}
    assert not unmarked & set(removebg.RemoveBgRequestSerializer().fields)


@pytest.mark.django_db
@pytest.mark.parametrize("name", [name for name, spec in SPECS.items() if spec.removebg])
def test_post_removebg_hands_every_marked_option_to_the_parser(key, empty_queue, name):  # noqa: F811
    response = keyed(key).post(
        "/v1.0/removebg", {"image_file": named(make_image()), name: INVALID[SPECS[name].type]},
        format="multipart")
    assert response.status_code == 400, response.content
    [error] = response.json()["errors"]
    assert error["code"] == "invalid_parameter" and error["source"] == {"parameter": name}
    assert Task.objects.count() == 0 and empty_queue.count == 0
