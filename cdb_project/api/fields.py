"""The API's one shape for a decimal: an exact, normalised plain string (``ground.amounts.plain``); every time field
labelled with its clock in the schema (``clock_label``)."""

from __future__ import annotations

from rest_framework import serializers

from ground.amounts import plain
from ground.api_times import iso_times
from ground.timeutil import clock_label


class PlainDecimalField(serializers.DecimalField):
    """A DecimalField that writes ``1573.08678491`` and ``0``, never ``1573.086784910000`` or ``0E-12``: every
    serializer's decimals go through it (``ModelSerializer`` maps model decimals here)."""

    def to_representation(self, value):
        text = super().to_representation(value)
        return plain(text) if isinstance(text, str) else text  # a string asked for (not coerce_to_string=False)


class ModelSerializer(serializers.ModelSerializer):
    """The API's ModelSerializer: model decimals become ``PlainDecimalField``, times ``IsoTimeField`` (one JSON
    shape); time fields say their clock."""

    serializer_field_mapping = {
        **iso_times(serializers.ModelSerializer.serializer_field_mapping),
        **{
            model: PlainDecimalField
            for model, field in serializers.ModelSerializer.serializer_field_mapping.items()
            if field is serializers.DecimalField
        },
    }

    def get_fields(self):
        fields = super().get_fields()
        clock_label(fields)
        return fields
