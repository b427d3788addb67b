"""REST: ``GET /api/optimizations/`` (stored studies, newest first, without the bulky report) and
``/api/optimizations/<id>/`` (with the full report, as ``manage.py optimize --json`` writes it)."""

from __future__ import annotations

from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from ground.api_times import iso_times
from ground.timeutil import clock_label

from .models import OptimizationRun

FIELDS = [
    "id",
    "study",
    "created_at",
    "updated_at",
    "strategy",
    "objective",
    "files",
    "space",
    "trials",
    "walk_forward",
    "best_params",
    "best_value",
    "backtest_command",
]


class OptimizationRunSerializer(serializers.ModelSerializer):
    serializer_field_mapping = iso_times(serializers.ModelSerializer.serializer_field_mapping)
    failed = serializers.SerializerMethodField(help_text="trials whose backtest raised (the report's 'failed')")

    class Meta:
        model = OptimizationRun
        fields = [*FIELDS, "failed"]

    def get_fields(self):
        fields = super().get_fields()
        clock_label(fields)  # created_at / updated_at are wall time, as in every other API answer
        return fields

    def get_failed(self, run: OptimizationRun) -> int:
        return len(run.report.get("failed", []))


class OptimizationRunDetailSerializer(OptimizationRunSerializer):
    class Meta:
        model = OptimizationRun
        fields = [*FIELDS, "failed", "report"]


class OptimizationRunViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = [IsAuthenticated]
    queryset = OptimizationRun.objects.order_by("-updated_at", "-id")

    def get_serializer_class(self):
        return OptimizationRunDetailSerializer if self.action == "retrieve" else OptimizationRunSerializer
