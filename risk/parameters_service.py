"""Changing risk parameters at run time: validated against PARAMETER_SPECS, every change audited.

One service for the REST API and the admin form: ``update_parameters`` checks every value first (nothing is
written when one is invalid), then stores the changed ones under a row lock, marks their source as ``admin``
and writes one ``AuditLog`` row (action ``parameter_change``) per changed parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from django.db import transaction

from .models import AuditLog, RiskParameters
from .parameters import PARAMETER_SPECS

ACTION = "parameter_change"


def spec_name(name: str) -> str:
    """The PARAMETER_SPECS name (``MAX_EXPOSURE_PCT``) for a spec or model field name (``max_exposure_pct``)."""
    upper = str(name).upper()
    if upper not in PARAMETER_SPECS:
        allowed = ", ".join(sorted(n.lower() for n in PARAMETER_SPECS))
        raise ValueError(f"{name}: unknown risk parameter (known: {allowed})")
    return upper


def _storable(field: str, value: Decimal, integer: bool) -> Decimal | int:
    if integer:
        return int(value)
    places = RiskParameters._meta.get_field(field).decimal_places
    kept = value.quantize(Decimal(1).scaleb(-places))
    if kept != value:  # refused, not silently rounded: the person would not get the value they set
        raise ValueError(
            f"{field.upper()}: {value} has more than {places} decimal places (the parameter keeps {places})"
        )
    return kept


def validate_changes(changes: Mapping[str, object]) -> dict[str, Decimal | int]:
    """{SPEC_NAME: storable value}; ValueError naming the first bad field and its allowed range."""
    checked: dict[str, Decimal | int] = {}
    for name, value in changes.items():
        spec = PARAMETER_SPECS[spec_name(name)]
        if isinstance(value, bool) or value is None:
            raise ValueError(f"{spec.name}: {value!r} is not a number (allowed {spec.describe_range()})")
        checked[spec.name] = _storable(spec.name.lower(), spec.check(value), spec.integer)
    return checked


def update_parameters(changes: Mapping[str, object], actor: str, reason: str = "") -> RiskParameters:
    """Apply ``changes`` ({name: value}, names upper or lower case) and audit each real change.

    Raises ValueError naming the field and its range when a name is unknown or a value invalid; then nothing
    is stored. Values equal to the stored ones are left alone (no audit row).
    """
    checked = validate_changes(changes)
    RiskParameters.load()  # make sure the row exists before locking it
    with transaction.atomic():
        params = RiskParameters.objects.select_for_update().get(pk=1)
        sources = dict(params.sources or {})
        changed = []
        for name, value in checked.items():
            field = name.lower()
            old = getattr(params, field)
            if Decimal(str(old)) == Decimal(str(value)):
                continue
            setattr(params, field, value)
            sources[name] = "admin"
            changed.append((name, old, value))
        if not changed:
            return params
        params.sources = sources
        params.save()
        for name, old, new in changed:
            AuditLog.objects.create(
                actor=actor,
                action=ACTION,
                target=name,
                old_value=str(old),
                new_value=str(new),
                reason=reason,
            )
    params.refresh_from_db()
    return params
