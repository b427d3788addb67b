"""Open trades stored before stops were kept per trade get theirs: the entry order's stop if it has one, else the
entry price × (1 − the current STOP_LOSS_PCT, 0.02 if no parameters are stored yet)."""

from decimal import Decimal

from django.db import migrations

STEP = Decimal("0.000000000001")


def backfill(apps, schema_editor):
    Trade = apps.get_model("execution", "Trade")
    RiskParameters = apps.get_model("risk", "RiskParameters")
    parameters = RiskParameters.objects.filter(pk=1).first()
    pct = parameters.stop_loss_pct if parameters is not None else Decimal("0.02")
    for trade in Trade.objects.filter(status="OPEN", stop_loss__isnull=True).select_related("order"):
        stop = trade.order.stop_loss
        trade.stop_loss = stop if stop is not None else (trade.entry_price * (1 - pct)).quantize(STEP)
        trade.save(update_fields=["stop_loss"])


class Migration(migrations.Migration):
    dependencies = [("execution", "0006_trade_stop_loss"), ("risk", "0003_halt_layer_operator_close")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
