"""Signal ids: deterministic, so a candle decided twice (a redelivery, a backtest and its replay) has one id."""


def signal_id_for(symbol: str, interval: str, strategy: str, timestamp: int) -> str:
    return f"{symbol}:{interval}:{strategy}:{timestamp}"
