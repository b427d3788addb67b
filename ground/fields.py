from django.db import models


class MoneyField(models.DecimalField):
    """Decimal for prices, quantities and money: 18 integer and 12 fractional digits."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_digits", 30)
        kwargs.setdefault("decimal_places", 12)
        super().__init__(*args, **kwargs)
