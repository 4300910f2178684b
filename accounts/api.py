"""``/api/v1/api-keys``: create (the secret shown once), list and revoke your own keys."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from accounts.authentication import SignedIn
from accounts.models import UserAPIKey
from accounts.services import api_key_create, api_key_revoke_owned


class APIKeySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    created_at = serializers.DateTimeField(source="created", read_only=True)
    expires_at = serializers.DateTimeField(source="expiry_date", read_only=True)

    class Meta:
        model = UserAPIKey
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at"]
        read_only_fields = fields


class APIKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=50, help_text="A name to recognise the key by.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="When the key stops working (default: never)."
    )


class APIKeyCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    key = serializers.CharField(help_text="The full key. Shown this once; only a hash is kept.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class APIKeyViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Your API keys. Send one as ``X-Api-Key: <key>`` instead of a JWT; managing keys takes a
    JWT."""

    serializer_class = APIKeySerializer
    permission_classes = [SignedIn]
    # A key that could mint keys would outlive its own revocation or expiry.
    api_key_message = ("API keys cannot create, list or revoke API keys: sign in "
                       "(POST /api/v1/auth/token) and send the JWT instead.")
    lookup_field = "public_id"
    lookup_url_kwarg = "pk"
    # A user's keys are few: one list, newest first, no cursor (the keys have no created_at).
    pagination_class = None

    def get_queryset(self):
        return UserAPIKey.objects.filter(user=self.request.user, revoked=False).order_by(
            "-created")

    @extend_schema(request=APIKeyCreateSerializer, responses={201: APIKeyCreatedSerializer},
                   summary="Create an API key (the full key is in this answer only)")
    def create(self, request):
        form = APIKeyCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        key, secret = api_key_create(user=request.user, name=form.validated_data["name"],
                                     expires_at=form.validated_data.get("expires_at"))
        body = {"id": str(key.public_id), "name": key.name, "prefix": key.prefix,
                "key": secret, "created_at": key.created, "expires_at": key.expiry_date}
        return Response(APIKeyCreatedSerializer(body).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Revoke an API key (it stops working at once)", responses={204: None})
    def destroy(self, request, pk=None):
        api_key_revoke_owned(user=request.user, public_id=self.get_object().public_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
