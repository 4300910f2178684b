"""``GET /api/v1/options``: the output options' contract (``Options.contract()``) as JSON.

What ``POST uploads`` and ``POST batches`` take next to the image, each option's type, choices
or limits, default and help, and whether ``POST /v1.0/removebg`` takes it too. Public, like the
schema: the web page builds its option controls from it before anyone signs in.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from removal.api.serializers import OptionListSerializer
from removal.pipeline.options import Options


@extend_schema(
    responses={200: OptionListSerializer}, auth=[],
    summary="The output options: type, choices or limits, default, help",
    description="Every option `POST uploads` and `POST batches` take (form fields or JSON next "
                "to the image); `removebg: true` ones `POST /v1.0/removebg` takes too.",
)
@api_view(["GET"])
@authentication_classes([])
@permission_classes([AllowAny])
def options(request):
    return Response(OptionListSerializer({"options": Options.contract()}).data)
