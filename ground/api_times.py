"""One JSON shape for a time in every API answer: ``ground.timeutil.iso_z`` (``2026-12-03T14:01:00.000Z``).

DRF writes a time as ``isoformat()`` gives it: ``2026-12-03T14:01:00Z`` on a whole second, ``…:00.123000Z`` (six
digits) otherwise, so one list mixed three shapes (``updated_at`` with microseconds beside ``since`` with
milliseconds). Every serializer's time goes through ``IsoTimeField``; a ModelSerializer maps its model's
DateTimeFields to it with ``iso_times``."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from rest_framework import serializers

from .timeutil import iso_z


class IsoTimeField(serializers.DateTimeField):
    """A DateTimeField answered as ``iso_z`` does (ISO 8601 UTC, milliseconds, ``Z``); a time already given as text
    (a service's snapshot) is read and written in that shape too. Input is DRF's (any ISO 8601)."""

    def to_representation(self, value):
        if value is None or value == "":
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return iso_z(value)


def iso_times(mapping: dict) -> dict:
    """A ModelSerializer's ``serializer_field_mapping`` with model DateTimeFields answered by ``IsoTimeField``."""
    return {**mapping, models.DateTimeField: IsoTimeField}
