"""REST: /api/notifications/ (every message, filtered), /api/notifications/destinations/ (URLs masked, never the
secret), POST /api/notifications/test/ and /api/notifications/daily-report/ (``notify.send_notifications``)."""

from __future__ import annotations

import django_filters as filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework import status as http
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ground.api_times import iso_times
from notify.models import LEVEL_CHOICES, SEND_PERMISSION, Destination, Notification

from .fields import ModelSerializer
from .filters import _since_until


class NotificationSerializer(ModelSerializer):
    digest = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "destination_name",
            "topic",
            "level",
            "title",
            "body",
            "status",
            "attempts",
            "error",
            "event_time",
            "digest",
            "created_at",
            "sent_at",
        ]


class DestinationSerializer(serializers.ModelSerializer):
    serializer_field_mapping = iso_times(serializers.ModelSerializer.serializer_field_mapping)
    topics = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Destination
        fields = [
            "id",
            "name",
            "masked_url",
            "level",
            "topics",
            "enabled",
            "source",
            "consecutive_failures",
            "last_error",
            "last_success_at",
            "last_failure_at",
        ]


class NotificationFilter(filters.FilterSet):
    destination = filters.CharFilter(field_name="destination_name", help_text="destination name")
    topic = filters.ChoiceFilter(choices=Notification.Topic.choices)
    status = filters.ChoiceFilter(choices=Notification.Status.choices)
    level = filters.ChoiceFilter(choices=LEVEL_CHOICES)
    since, until = _since_until("created_at", "created")

    class Meta:
        model = Notification
        fields = ["destination", "topic", "status", "level", "since", "until"]


class NotificationViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAuthenticated]
    filter_backends = [DjangoFilterBackend]
    queryset = Notification.objects.order_by("-created_at", "-id")
    serializer_class = NotificationSerializer
    filterset_class = NotificationFilter


class DestinationViewSet(viewsets.ReadOnlyModelViewSet):
    """Destinations with their URL masked (the secret is never served)."""

    permission_classes = [IsAuthenticated]
    queryset = Destination.objects.order_by("name")
    serializer_class = DestinationSerializer


class CanSend(BasePermission):
    message = f"Sending notifications on demand needs the {SEND_PERMISSION} permission."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(SEND_PERMISSION))


class QueuedSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Messages queued (one per destination that takes it)")


SEND_RESPONSES = {
    202: QueuedSerializer,
    401: OpenApiResponse(description="No or invalid credentials"),
    403: OpenApiResponse(description="Authenticated, but without the needed permission"),
}


class TestMessageView(APIView):
    permission_classes = [CanSend]

    @extend_schema(summary="Queue a test message to every enabled destination", request=None, responses=SEND_RESPONSES)
    def post(self, request):
        from notify import service

        queued = service.queue_to_all(Notification.Topic.TEST, service.test_notice())
        return Response({"queued": len(queued)}, status=http.HTTP_202_ACCEPTED)


class DailyReportView(APIView):
    permission_classes = [CanSend]

    @extend_schema(summary="Queue today's report so far (topic daily)", request=None, responses=SEND_RESPONSES)
    def post(self, request):
        from notify.tasks import daily_report

        return Response({"queued": daily_report(scheduled=False)}, status=http.HTTP_202_ACCEPTED)
