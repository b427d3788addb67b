import json

from django.core.management.base import BaseCommand

from ground.amounts import base_of, money, percent, price, quantity, quote_of
from risk.parameters import parameter_text
from risk.status import risk_status


class Command(BaseCommand):
    help = "Trading state, risk parameters (value and source), exposure, daily drawdown and open positions."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def handle(self, *args, **options):
        status = risk_status()
        if options["json"]:
            self.stdout.write(json.dumps(status, indent=2))
            return
        out = self.stdout.write
        quote = status["quote"]
        since = status["since"][:19] + "Z"  # ISO 8601 UTC
        out(f"Trading state: {status['state']} since {since} (market time) ({status['reason'] or 'no reason'})")
        out(f"Mode: {status['mode']}")
        out(
            f"Equity {money(status['equity'], quote, unit=True)}  cash {money(status['cash'], quote, unit=True)}"
            f"  exposure {money(status['exposure'], quote, unit=True)} ({percent(status['exposure_pct'])})"
            f"  daily drawdown {percent(status['daily_drawdown_pct'])}"
        )
        out("Parameters: (a _PCT value is a fraction: 0.05 = 5 %)")
        for name, item in status["parameters"].items():
            value = parameter_text(name, item["value"])
            line = f"  {name:<26} {value:<16} {item['source']:<8} range {item['range'][0]}–{item['range'][1]}"
            out(line)
        for warning in status["warnings"]:
            out(self.style.WARNING(f"warning: {warning}"))
        out(f"Open positions: {len(status['open_positions'])}")
        for position in status["open_positions"]:
            symbol = position["symbol"]
            quote = quote_of(symbol)
            out(
                f"  {symbol:<12} {quantity(position['quantity'], base_of(symbol))}"
                f" @ {price(position['avg_entry_price'], quote)}  last {price(position['last_price'], quote)}"
                f"  unrealized before fees {money(position['unrealized_pnl'], quote, unit=True, sign=True)}"
            )
