"""remove.bg's API on QuickBG: ``POST /v1.0/removebg`` and ``GET /v1.0/account``.

The paths sit at the site root (``quickbg/urls.py``), so a remove.bg client whose base URL is
changed works unchanged. Authentication is ``X-Api-Key`` only (a key from ``/api/v1/api-keys``).

The endpoint is synchronous on top of the normal task machinery: it stores the image and creates
an Upload and a Task through ``services.uploads`` (so the task shows in the admin, the metrics
and the month's credits), queues it at the FRONT of the interactive queue, and waits for the
worker's completion signal (``queue.wait_task_done``: a Redis BLPOP, no database polling) for at
most ``QUICKBG_SYNC_TIMEOUT`` seconds; past that it answers 504 with the task id to poll.

Parameters follow remove.bg's API reference, defaults included (``size=preview``,
``format=auto``, ``crop=false``, ``type=auto``, ``type_level=1``); unknown parameters are
ignored and empty or ``undefined`` values mean "not given". The output options are QuickBG's
``Options`` (``pipeline/options.py``) but for ``crop_margin``, which remove.bg caps where
QuickBG's API refuses (``_capped_margin``). ``type`` picks the model (``model_for_type``) and is
echoed in ``X-Type`` (``x_type``). The rate limit is remove.bg's, in megapixel-images
(``MegapixelRateThrottle``, ``megapixel_weight``). Errors use remove.bg's shape and codes,
``{"errors": [{"title", "code", "detail"?}]}`` (``removal.api.errors``). The README's remove.bg
section has the table of every parameter and header and what differs.
"""

from __future__ import annotations

import base64
import binascii
import math

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import Throttled
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import APIKeyAuthentication
from removal import selectors, serving, storage
from removal.api.serializers import option_fields
from removal.api.throttling import MegapixelRateThrottle
from removal.errors import InvalidInput
from removal.pipeline import trim
from removal.pipeline.options import (
    MAX_MARGIN_PERCENT,
    MAX_MARGIN_PX,
    SIZES,
    InvalidOption,
    Options,
)
from removal.pipeline.validate import inspect
from removal.services import tasks, uploads

# remove.bg's defaults where they differ from QuickBG's own, and its help text for them; the
# other options' help is the contract's (``Options.contract()``, ``removebg=True``).
REMOVEBG_DEFAULTS = {"size": "preview", "format": "auto", "crop": "false", "crop_margin": "0"}
REMOVEBG_HELP = {
    "size": "preview (default), small, regular (0.25 MP), medium (1.5 MP), hd (4 MP), full, 4k, "
            "auto.",
    "format": "auto (default), png, jpg, webp, zip (color.jpg + alpha.png).",
    "crop": "Trim empty margins (default false).",
    "crop_margin": f"1, 2 or 4 values (CSS order), px or %, capped at {MAX_MARGIN_PX}px / "
                   f"{MAX_MARGIN_PERCENT}%; with crop.",
}
OPTION_NAMES = tuple(Options.names(removebg=True))
# remove.bg's ``type`` values, and the classes ``X-Type`` names at each ``type_level``.
TYPES = ("auto", "person", "product", "car", "animal", "graphic", "transportation")
TYPE_LEVELS = ("none", "1", "2", "latest")
# Level 1 classes: person, product, animal, car, other; level 2 adds transportation, graphics,
# car_interior, car_part.
LEVEL_1 = {"graphic": "other", "transportation": "other"}
LEVEL_2 = {"graphic": "graphics"}


def _unset(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in ("", "undefined", "null"))


def _value(request, name: str):
    value = request.data.get(name)
    return None if _unset(value) else value


def _fetch(url: str) -> bytes:
    # removal.fetch (SSRF rules, QUICKBG_FETCH_ALLOW, size cap while streaming).
    from removal.fetch import fetch_bytes

    return fetch_bytes(str(url), max_bytes=uploads.validation_limits().max_bytes)


def _image(request) -> tuple[bytes, str]:
    """The one input image: ``image_file``, ``image_file_b64`` or ``image_url``."""
    given = {name: _value(request, name) for name in ("image_file", "image_file_b64", "image_url")}
    given["image_file"] = request.FILES.get("image_file") or given["image_file"]
    sent = [name for name, value in given.items() if value is not None]
    if len(sent) != 1:
        raise InvalidInput("Send exactly one of image_file, image_file_b64 or image_url")
    if sent == ["image_file"]:
        file = given["image_file"]
        if not hasattr(file, "read"):
            raise InvalidInput("image_file must be a file (multipart/form-data)")
        return file.read(), file.name or "image"
    if sent == ["image_file_b64"]:
        return _b64(given["image_file_b64"], "image_file_b64"), "image"
    url = str(given["image_url"])
    return _fetch(url), url.rsplit("/", 1)[-1].split("?", 1)[0] or "image"


def _b64(value, name: str) -> bytes:
    text = str(value).strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{name} is not valid base64") from None


def _background(request) -> bytes | None:
    file = request.FILES.get("bg_image_file")
    url = _value(request, "bg_image_url")
    if file is not None and url is not None:
        raise InvalidInput("Send at most one of bg_image_file or bg_image_url")
    if file is not None:
        return file.read()
    return _fetch(url) if url is not None else None


def _capped_margin(value):
    """remove.bg caps each ``crop_margin`` at 50 % of the subject or 500 px (QuickBG's own API
    refuses a value above the cap instead, saying so)."""
    if value is None:
        return value
    parts = []
    for part in str(value).replace(",", " ").replace(" %", "%").split():
        text = part.strip().lower()
        percent = text.endswith("%")
        number = text.removesuffix("%").removesuffix("px")
        try:
            amount = float(number)
        except ValueError:
            return value  # Options names the bad value
        cap = MAX_MARGIN_PERCENT if percent else MAX_MARGIN_PX
        parts.append(f"{min(amount, cap):g}{'%' if percent else ''}" if amount > cap else part)
    return " ".join(parts)


def _type(request) -> tuple[str, str]:
    """``(type, type_level)`` as remove.bg takes them (defaults ``auto`` and ``1``)."""
    kind = str(_value(request, "type") or "auto").strip().lower()
    level = str(_value(request, "type_level") or "1").strip().lower()
    if kind not in TYPES:
        raise InvalidOption("type", f"must be one of {', '.join(TYPES)}")
    if level not in TYPE_LEVELS:
        raise InvalidOption("type_level", f"must be one of {', '.join(TYPE_LEVELS)}")
    return kind, level


def x_type(kind: str, level: str) -> str | None:
    """``X-Type``: the foreground type in ``level``'s classes, ``None`` for ``none``. QuickBG
    does not classify, so ``auto`` answers ``other`` and a given type is echoed."""
    if level == "none":
        return None
    if kind == "auto":
        return "other"
    return (LEVEL_1 if level == "1" else LEVEL_2).get(kind, kind)


def model_for_type(kind: str) -> str:
    """The model that runs for remove.bg's ``type``: the one ``QUICKBG_TYPE_MODELS`` maps it to
    (``transportation`` counts as ``car``), else the server's default (``QUICKBG_MODEL``)."""
    return serving.model_for_removebg_type("car" if kind == "transportation" else kind)


def megapixel_weight(width: int, height: int, size: str) -> int:
    """What an image costs against the rate limit, as remove.bg counts it: the result's
    megapixels (the input's, capped by ``size``: 0.25 for a preview) rounded up, at least 1."""
    megapixels = width * height / 1_000_000
    cap = SIZES.get(size)
    if cap is not None:
        megapixels = min(megapixels, cap)
    return max(1, math.ceil(round(megapixels, 6)))


def parse_options(request) -> dict:
    """remove.bg's parameters as QuickBG output options (``Options``), remove.bg's defaults."""
    raw = {**REMOVEBG_DEFAULTS}
    raw.update({n: _value(request, n) for n in OPTION_NAMES if _value(request, n) is not None})
    raw["crop_margin"] = _capped_margin(raw.get("crop_margin"))
    return Options.parse(raw).to_dict()


def _failure(task) -> Exception:
    """The error to answer for a failed synchronous task (remove.bg's code for the kind)."""
    if task.error_message == trim.NoForeground().detail:
        return trim.NoForeground()
    return InvalidInput(task.error_message or "Processing failed")


class RemoveBgRequestSerializer(serializers.Serializer):
    """For the schema only: the view reads these from the form or JSON body itself."""

    image_file = serializers.FileField(required=False, help_text="The image (multipart).")
    image_file_b64 = serializers.CharField(required=False, help_text="The image, base64.")
    image_url = serializers.URLField(required=False, help_text="An image URL to fetch.")
    type = serializers.CharField(required=False, help_text="auto (default), person, product, "
                                 "car, animal, graphic, transportation; runs the model "
                                 "QUICKBG_TYPE_MODELS maps it to (the default model otherwise); "
                                 "echoed in X-Type.")
    type_level = serializers.CharField(required=False, help_text="1 (default), 2, latest, or "
                                       "none (no X-Type header).")
    bg_image_url = serializers.URLField(required=False, help_text="Background image URL.")
    bg_image_file = serializers.FileField(required=False, help_text="Background image file.")

    def get_fields(self):
        return {**super().get_fields(), **option_fields(removebg=True, help_texts=REMOVEBG_HELP)}


class RemoveBgResultSerializer(serializers.Serializer):
    result_b64 = serializers.CharField()
    foreground_top = serializers.IntegerField()
    foreground_left = serializers.IntegerField()
    foreground_width = serializers.IntegerField()
    foreground_height = serializers.IntegerField()


class RemoveBgView(APIView):
    """``POST /v1.0/removebg``: remove the background and answer with the result."""

    authentication_classes = [APIKeyAuthentication]
    throttle_classes = [MegapixelRateThrottle]
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    error_style = "removebg"

    def perform_content_negotiation(self, request, force=False):
        # The image answer is a plain HttpResponse; everything else (JSON result, errors) is
        # JSON whatever ``Accept`` says, so ``Accept: image/png`` is never a 406.
        return super().perform_content_negotiation(request, force=True)

    def check_throttles(self, request):
        self.throttle = MegapixelRateThrottle()
        if not self.throttle.allow_request(request, self):
            self.throttled(request, self.throttle.wait())

    def finalize_response(self, request, response, *args, **kwargs):
        throttle = getattr(self, "throttle", None)
        if throttle is not None and response.status_code == 429:
            throttle.refund()  # too many unfinished tasks: a 429 is charged nothing
        elif throttle is not None:
            throttle.take(1, force=True)  # a request refused before its image was weighed
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in (throttle.headers() if throttle is not None else {}).items():
            response[name] = value
        return response

    @extend_schema(
        summary="remove.bg compatible: remove the background (synchronous)",
        request={"multipart/form-data": RemoveBgRequestSerializer,
                 "application/json": RemoveBgRequestSerializer},
        parameters=[OpenApiParameter("X-Api-Key", location="header", required=True)],
        responses={200: OpenApiResponse(RemoveBgResultSerializer,
                                        description="The image bytes, or JSON with "
                                        "Accept: application/json"),
                   400: dict, 402: dict, 403: dict, 429: dict, 504: dict},
    )
    def post(self, request):
        if not hasattr(request.data, "get"):
            raise InvalidInput("Send a form or a JSON object")
        options = parse_options(request)
        kind, level = _type(request)
        data, filename = _image(request)
        background = _background(request)
        info = inspect(data, uploads.validation_limits())
        if not self.throttle.take(megapixel_weight(info.width, info.height, options["size"])):
            raise Throttled(self.throttle.wait())
        charge = selectors.credit_cost(options)
        task = uploads.upload_create_from_bytes(
            owner=request.user, data=data, filename=filename, options=options,
            model=model_for_type(kind), background=background, at_front=True,
        )
        task = tasks.task_wait(task=task, timeout=settings.QUICKBG_SYNC_TIMEOUT)
        if task.status != task.Status.COMPLETED:
            raise _failure(task)
        return self._answer(request, task, storage.read(task.result_key), charge,
                            x_type(kind, level))

    def _answer(self, request, task, body: bytes, charge: float, detected: str | None):
        metrics = task.metrics
        box = metrics.get("foreground") or {}
        headers = {
            "X-Type": detected,
            "X-Width": str(metrics.get("output_width", "")),
            "X-Height": str(metrics.get("output_height", "")),
            "X-Foreground-Top": str(box.get("top", 0)),
            "X-Foreground-Left": str(box.get("left", 0)),
            "X-Foreground-Width": str(box.get("width", 0)),
            "X-Foreground-Height": str(box.get("height", 0)),
            "X-Credits-Charged": f"{charge:g}",
            "X-Task-Id": str(task.pk),
        }
        if detected is None:  # type_level=none
            del headers["X-Type"]
        if _wants_json(request.headers.get("Accept", "")):
            data = {"result_b64": base64.b64encode(body).decode("ascii"),
                    **{f"foreground_{k}": box.get(k, 0)
                       for k in ("top", "left", "width", "height")}}
            return Response({"data": data}, headers=headers)
        response = HttpResponse(body, content_type=storage.content_type_of(task.result_key))
        for name, value in headers.items():
            response[name] = value
        return response




def _wants_json(accept: str) -> bool:
    """JSON only when asked for it: ``Accept: application/json`` without an image type."""
    accept = accept.lower()
    return "application/json" in accept and "image/" not in accept


class AccountView(APIView):
    """``GET /v1.0/account``: this month's credits for the key's user, in remove.bg's shape."""

    authentication_classes = [APIKeyAuthentication]
    error_style = "removebg"

    @extend_schema(summary="remove.bg compatible: credits used this month",
                   parameters=[OpenApiParameter("X-Api-Key", location="header", required=True)],
                   responses={200: dict, 403: dict})
    def get(self, request):
        used = selectors.credits_used(owner=request.user)
        limit = settings.QUICKBG_MONTHLY_CREDITS or None
        credits = {
            # remove.bg's fields; QuickBG counts usage, so "total" is this month's usage.
            "total": used, "subscription": 0, "payg": used, "enterprise": 0,
            "used_this_month": used, "monthly_limit": limit,
            "remaining": None if limit is None else max(0.0, limit - used),
        }
        api = {"free_calls": 0, "sizes": "all"}
        return Response({"data": {"attributes": {"credits": credits, "api": api}}})
