"""A HALTED state stored before the halting layer was kept (the layer was saved for PAUSED only) gets it back from
its last state change: a drawdown halt then keeps closing positions, and releasing it restarts the day's drawdown."""

from django.db import migrations


def restore(apps, schema_editor):
    TradingState = apps.get_model("risk", "TradingState")
    RiskEvent = apps.get_model("risk", "RiskEvent")
    for state in TradingState.objects.filter(state="HALTED", pause_layer=""):
        last = RiskEvent.objects.filter(decision="STATE_CHANGE").order_by("-id").first()
        if last is not None and last.layer not in ("", "state") and last.reason.endswith("→ HALTED: " + state.reason):
            state.pause_layer = last.layer
            state.save(update_fields=["pause_layer"])


class Migration(migrations.Migration):
    dependencies = [("risk", "0003_halt_layer_operator_close")]

    operations = [migrations.RunPython(restore, migrations.RunPython.noop)]
