"""POST /v1.0/removebg, parameter by parameter as remove.bg's reference defines them (issue 24):
roi and crop_margin in px or %, bg_color with alpha and names, type/type_level and X-Type,
add_shadow, semitransparency, remove.bg's error codes (and the native API's wording for the
same cases), the megapixel-weighted rate limit and the ZIP layout.

Through the real HTTP surface, with the job entry point run by ``job_thread`` on the stand-in
model (a disc: the subject's box is known exactly); the real model runs in the client tests.
"""

# ruff: noqa: F811 - the fixtures imported from test_removebg are parameters here
from __future__ import annotations

import base64
import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from removal import runner
from removal.models import Task
from tests.api.test_removebg import job_thread, key, keyed, photo  # noqa: F401 - fixtures
from tests.helpers import DiscModel, named
from tests.images import make_image

pytestmark = pytest.mark.django_db(transaction=True)


def post(key, **data):
    image = data.pop("image", None) or photo()
    return keyed(key).post("/v1.0/removebg", {"image_file": named(image), **data},
                           format="multipart")


def rgba(response) -> np.ndarray:
    assert response.status_code == 200, response.content
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def use_model(monkeypatch, model) -> None:
    monkeypatch.setattr(runner, "get_segmenter", lambda name=None: model)


def error(response, status=400) -> dict:
    assert response.status_code == status, response.content
    [only] = response.json()["errors"]
    return only


# The stand-in disc on a 400 x 300 photo: centre (200, 150), radii 100 x 75 (box 100..300, 75..225).


def test_roi_takes_px_and_percent_per_coordinate(key, job_thread):
    pixels = rgba(post(key, roi="0px 0px 200px 100%"))
    alpha = pixels[:, :, 3]
    assert alpha[150, 150] == 255 and alpha[150, 199] == 255  # inside the roi
    assert alpha[:, 200:].max() == 0  # the disc's right half is outside it
    mixed = rgba(post(key, roi="0 0% 50% 300px"))
    assert np.array_equal(mixed[:, :, 3], alpha)
    assert error(post(key, roi="0 0 200 "))["code"] == "invalid_parameter"


def test_crop_margin_takes_one_two_or_four_values_in_css_order_and_caps_them(key, job_thread):
    def size(margin):
        response = post(key, crop="true", crop_margin=margin)
        assert response.status_code == 200, response.content
        return Image.open(io.BytesIO(response.content)).size

    assert size("0") == (200, 150)
    assert size("10px") == (220, 170)
    assert size("10px 20px") == (240, 170)  # top/bottom 10, left/right 20
    assert size("5px 10% 0 0") == (220, 155)  # top 5, right 10 % of 200, bottom 0, left 0
    assert size("10% 0") == (200, 180)  # top/bottom 10 % of the subject's height (150)
    # remove.bg caps each side at 500 px / 50 % of the subject; the photo's edge stops it first.
    assert size("900px") == (400, 300)
    assert size("80% 0") == (200, 300)  # capped at 50 %: 75 px above and below
    wide = make_image("PNG", size=(2400, 400), color=(180, 40, 40))  # the disc: ~1200 x 200
    subject = post(key, image=wide, crop="true", size="full")
    width, height = Image.open(io.BytesIO(subject.content)).size
    response = post(key, image=wide, crop="true", crop_margin="0 900px 0 0", size="full")
    assert Image.open(io.BytesIO(response.content)).size == (width + 500, height)
    assert error(post(key, crop_margin="1 2 3"))["source"] == {"parameter": "crop_margin"}


@pytest.mark.parametrize("color, expected", [
    ("81d4fa77", (0x81, 0xd4, 0xfa, 0x77)),  # 8 digits: alpha last
    ("#f0f8", (0xff, 0x00, 0xff, 0x88)),  # 4 digits
    ("fff", (255, 255, 255, 255)),
    ("81d4fa", (0x81, 0xd4, 0xfa, 255)),
    ("green", (0, 128, 0, 255)),
])
def test_bg_color_takes_hex_with_alpha_and_colour_names(key, job_thread, color, expected):
    response = post(key, bg_color=color, format="png")
    pixels = rgba(response)
    assert tuple(pixels[2, 2]) == expected  # the background, far from the subject
    assert np.abs(pixels[150, 200].astype(int) - (180, 40, 40, 255)).max() <= 2  # the subject
    auto = post(key, bg_color=color)  # format=auto: JPEG only when the result is opaque
    assert auto["Content-Type"] == ("image/jpeg" if expected[3] == 255 else "image/png")


def test_type_is_echoed_in_x_type_at_the_type_level_asked(key, job_thread):
    assert post(key)["X-Type"] == "other"  # auto: QuickBG does not classify
    assert post(key, type="person")["X-Type"] == "person"
    assert post(key, type="graphic", type_level="1")["X-Type"] == "other"
    assert post(key, type="graphic", type_level="2")["X-Type"] == "graphics"
    assert post(key, type="transportation", type_level="latest")["X-Type"] == "transportation"
    silent = post(key, type="car", type_level="none")
    assert silent.status_code == 200 and "X-Type" not in silent
    refused = error(post(key, type_level="3"))
    assert refused["code"] == "invalid_parameter"
    assert refused["source"] == {"parameter": "type_level"}
    assert "none, 1, 2, latest" in refused["title"]


def test_type_chooses_the_model_through_one_function(key, job_thread, monkeypatch):
    from removal.api import removebg

    asked = []
    monkeypatch.setattr(removebg, "model_for_type", lambda kind: asked.append(kind) or None)
    response = post(key, type="product")
    assert response.status_code == 200 and asked == ["product"]
    assert Task.objects.get(pk=response["X-Task-Id"]).model == "isnet-general-use"


def test_add_shadow_lays_a_soft_shadow_under_the_subject(key, job_thread):
    plain = rgba(post(key, bg_color="ffffff", format="png"))
    shaded = rgba(post(key, bg_color="ffffff", format="png", add_shadow="true"))
    below = shaded[227, 200, :3].astype(int)  # 2 px under the disc's bottom (y = 225)
    assert plain[227, 200, :3].tolist() == [255, 255, 255]
    assert 120 < below.mean() < 235  # grey: darkened, not black
    assert shaded[227, 200, 0] == shaded[227, 200, 1] == shaded[227, 200, 2]
    assert shaded[72, 200, :3].mean() > below.mean() + 20  # 2 px above the top: lighter
    assert shaded[5, 5, :3].tolist() == [255, 255, 255]  # far away: untouched
    assert np.array_equal(shaded[150, 150:250], plain[150, 150:250])  # the subject on top

    transparent = rgba(post(key, format="png", add_shadow="true"))
    assert 0 < transparent[227, 200, 3] <= 128 and transparent[227, 200, :3].max() < 40
    assert transparent[5, 5, 3] == 0
    photo_bg = make_image("PNG", size=(400, 300), color=(0, 0, 255))
    over = keyed(key).post("/v1.0/removebg", {
        "image_file": named(photo()), "bg_image_file": named(photo_bg, "bg.png"),
        "add_shadow": "true", "format": "png"}, format="multipart")
    on_image = rgba(over)
    assert on_image[227, 200, 2] < 235 and on_image[5, 5, :3].tolist() == [0, 0, 255]
    # Cropped, the result keeps room for the shadow below the subject.
    cropped = post(key, crop="true", add_shadow="true", format="png")
    assert Image.open(io.BytesIO(cropped.content)).size[1] > 150
    assert int(cropped["X-Foreground-Height"]) == 150


def test_semitransparency_false_makes_the_subject_opaque_inside(key, job_thread, monkeypatch):
    model = DiscModel()
    model.output[0, 0, 460:560, 460:560] = 0.5  # a "window" the model sees through halfway
    use_model(monkeypatch, model)
    kept = rgba(post(key, format="png"))[:, :, 3]
    assert 120 <= kept[150, 200] <= 135  # semitransparency=true (the default): as matted
    solid = rgba(post(key, format="png", semitransparency="false"))[:, :, 3]
    assert solid[150, 200] == 255
    assert solid[2, 2] == 0 and solid[:, 305:].max() == 0  # the background stays transparent
    assert np.array_equal(solid > 0, kept > 0)  # the same outline


def test_an_empty_cut_out_is_unknown_foreground_in_both_apis(key, job_thread, monkeypatch,
                                                             user, client_for):
    blank = DiscModel(empty=True)
    blank.output[:] = np.random.default_rng(0).uniform(0, 0.02, blank.output.shape)
    use_model(monkeypatch, blank)  # what ISNet answers for a blank image: faint noise
    refused = error(post(key, image=make_image("PNG", size=(400, 300), color=(255, 255, 255))))
    assert refused == {"title": "No foreground found in the image", "code": "unknown_foreground"}
    native = client_for(user).post("/api/v1/uploads", {"file": named(photo())},
                                   format="multipart")
    deadline = time.monotonic() + 30
    task = Task.objects.get(pk=native.json()["task_id"])
    while task.status != Task.Status.FAILED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        task.refresh_from_db()
    body = client_for(user).get(f"/api/v1/tasks/{task.pk}").json()
    assert body["error_message"] == "No foreground found in the image"


def test_error_codes_as_remove_bg_sends_them_and_the_native_wording(key, user, client_for,
                                                                   settings):
    settings.QUICKBG_MAX_UPLOAD_MB = 0.01
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    big = buffer.getvalue()
    too_large = error(post(key, image=big))
    assert too_large["code"] == "file_too_large"
    native = client_for(user).post("/api/v1/uploads", {"file": named(big)}, format="multipart")
    assert native.status_code == 400 and native.json()["detail"] == too_large["title"]
    assert too_large["title"].startswith("File size (0.1MB) exceeds maximum (0")
    settings.QUICKBG_MAX_UPLOAD_MB = 10

    invalid = error(post(key, size="giant"))
    assert invalid["code"] == "invalid_parameter" and invalid["source"] == {"parameter": "size"}
    assert invalid["detail"].startswith("Invalid value for parameter size: must be one of")
    native = client_for(user).post("/api/v1/uploads", {"file": named(photo()), "size": "giant"},
                                   format="multipart")
    assert native.status_code == 400 and native.json()["detail"] == invalid["title"]
    assert Task.objects.count() == 0


def test_413_on_the_remove_bg_path_is_file_too_large(key, settings):
    settings.QUICKBG_MAX_BODY_MB = 0.01
    response = keyed(key).post("/v1.0/removebg", {"image_file": named(b"x" * 20_000)},
                               format="multipart")
    assert error(response, 413)["code"] == "file_too_large"


@pytest.fixture
def clean_rate(settings):
    from django.core.cache import cache

    def clean():
        client = cache._cache.get_client(None, write=True)
        for name in client.scan_iter(cache.make_key("throttle_removebg_*")):
            client.delete(name)

    clean()
    yield
    clean()


def test_rate_limit_is_weighted_by_megapixels_as_remove_bg_counts(key, job_thread, settings,
                                                                  clean_rate):
    settings.QUICKBG_REMOVEBG_RATE = "10/hour"
    three_mp = make_image("JPEG", size=(2000, 1500), color=(180, 40, 40))
    full = post(key, image=three_mp, size="full")
    assert full.status_code == 200, full.content
    window_end = (int(time.time()) // 3600 + 1) * 3600
    assert (full["X-RateLimit-Limit"], full["X-RateLimit-Remaining"]) == ("10", "7")
    assert int(full["X-RateLimit-Reset"]) == window_end
    preview = post(key, image=three_mp)  # size=preview: a 0.25 MP result costs 1
    assert preview["X-RateLimit-Remaining"] == "6" and preview["X-Credits-Charged"] == "0.25"
    medium = post(key, image=three_mp, size="medium")  # 1.5 MP: 2
    assert medium["X-RateLimit-Remaining"] == "4"
    before = Task.objects.count()
    # 7.5 MP does not fit in the 4 left: 429, nothing charged, no task.
    refused = post(key, image=make_image("JPEG", size=(3000, 2500)), size="full")
    assert error(refused, 429)["code"] == "rate_limit_exceeded"
    assert refused["X-RateLimit-Remaining"] == "4"
    assert 0 < int(refused["Retry-After"]) <= window_end - int(time.time()) + 1
    assert Task.objects.count() == before
    assert post(key, image=three_mp, size="full")["X-RateLimit-Remaining"] == "1"


def test_zip_is_color_jpg_and_alpha_png_as_remove_bg_lays_them_out(key, job_thread):
    background = (20, 200, 20)
    image = Image.new("RGB", (400, 300), background)
    image.paste((180, 40, 40), (100, 75, 300, 225))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    response = post(key, image=buffer.getvalue(), format="zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ["color.jpg", "alpha.png"]
        color = Image.open(io.BytesIO(archive.read("color.jpg")))
        alpha = Image.open(io.BytesIO(archive.read("alpha.png")))
    assert (color.format, color.mode, color.size) == ("JPEG", "RGB", (400, 300))
    assert (alpha.format, alpha.mode, alpha.size) == ("PNG", "L", (400, 300))
    png = rgba(post(key, image=buffer.getvalue(), format="png"))
    assert np.array_equal(np.asarray(alpha), png[:, :, 3])  # the same alpha as the PNG result
    colors = np.asarray(color).astype(int)
    assert np.abs(colors[150, 200] - (180, 40, 40)).max() <= 8  # the subject's colour
    # Under alpha 0 the subject's colours are spread, not the old green background.
    assert np.abs(colors[5, 5] - background).sum() > 150
    assert np.abs(colors[5, 5] - (180, 40, 40)).max() <= 30

    opaque = post(key, image=buffer.getvalue(), format="zip", bg_color="0000ff")
    with zipfile.ZipFile(io.BytesIO(opaque.content)) as archive:
        flat = np.asarray(Image.open(io.BytesIO(archive.read("alpha.png"))))
        blue = np.asarray(Image.open(io.BytesIO(archive.read("color.jpg"))))
    assert flat.min() == 255  # on a colour the result is opaque everywhere
    assert blue[5, 5, 2] > 240 and blue[5, 5, 0] < 15


def test_size_auto_is_the_original(key, job_thread):
    response = post(key, image=make_image("JPEG", size=(1200, 900)), size="auto")
    assert (response["X-Width"], response["X-Height"]) == ("1200", "900")
    assert response["X-Credits-Charged"] == "1"


def test_the_schema_documents_every_remove_bg_parameter(user, client_for):
    schema = client_for(user).get("/api/v1/schema", HTTP_ACCEPT="application/json").json()
    body = schema["paths"]["/v1.0/removebg"]["post"]["requestBody"]["content"]
    fields = schema["components"]["schemas"][body["multipart/form-data"]["schema"]["$ref"].rsplit(
        "/", 1)[-1]]["properties"]
    for name in ("image_file", "image_file_b64", "image_url", "size", "type", "type_level",
                 "format", "roi", "crop", "crop_margin", "scale", "position", "channels",
                 "add_shadow", "semitransparency", "bg_color", "bg_image_url", "bg_image_file"):
        assert name in fields, name
    assert "CSS" in fields["crop_margin"]["description"]


def test_megapixel_weight_rounds_up_the_results_megapixels():
    from removal.api.removebg import megapixel_weight

    assert megapixel_weight(625, 400, "preview") == 1
    assert megapixel_weight(6250, 4000, "preview") == 1
    assert megapixel_weight(1600, 1200, "full") == 2
    assert megapixel_weight(4000, 2500, "full") == 10
    assert megapixel_weight(4000, 2500, "hd") == 4
    assert megapixel_weight(1000, 1000, "auto") == 1
    assert megapixel_weight(10, 10, "full") == 1


def test_b64_json_also_carries_the_type(key, job_thread):
    body = {"image_file_b64": base64.b64encode(photo()).decode(), "type": "animal"}
    response = keyed(key).post("/v1.0/removebg", body, format="json",
                               HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response["X-Type"] == "animal"


def test_too_many_unfinished_tasks_is_a_429_that_costs_no_rate(key, user, client_for, settings,
                                                              empty_queue, clean_rate):
    settings.QUICKBG_MAX_QUEUED_TASKS = 1
    queued = client_for(user).post("/api/v1/uploads", {"file": named(photo())},
                                   format="multipart")
    assert queued.status_code == 202  # no worker: it stays queued
    refused = post(key)
    assert error(refused, 429)["code"] == "rate_limit_exceeded"
    assert int(refused["Retry-After"]) > 0
    assert refused["X-RateLimit-Remaining"] == refused["X-RateLimit-Limit"] == "500"
