"""Trading state transitions (ACTIVE / PAUSED / HALTED), each stored, audited and announced.

One service for the admin, the API, the dashboard, the manage.py commands and the
risk layers. ACTIVE ↔ PAUSED happens automatically with a reason (the layer that
paused is remembered, so only that layer resumes); HALTED is left only by a person.
"""

from __future__ import annotations

import unicodedata

from django.db import transaction

from execution.models import Portfolio
from ground import bus
from ground.amounts import iso_utc
from ground.timeutil import iso_z, ms_to_datetime
from marketdata import clock
from marketdata.ingest import latest_prices
from marketdata.models import StaleWatchState
from marketdata.stale import handed_back
from marketdata.watchlist import account_quote

from .account_view import account_rows, account_state
from .alerts import raise_alert
from .desk import (
    HALT,
    HALT_CLOSE,
    LEVEL_BY_STATE,
    REASON_MAX,
    RELEASE,
    AmendHalt,
    ChangeState,
    DeskState,
    OperatorCommand,
    RaiseAlert,
    RestartDay,
    operate,
    state_change_message,
)
from .models import AuditLog, RiskEvent, TradingState

ACTOR_MAX = 150  # TradingState.changed_by, AuditLog.actor
_FOLDED = str.maketrans("\t\r\n", "   ")  # line breaks and tabs become spaces: a reason is one line


def clean_text(value, name: str, limit: int, *, required: bool) -> str:
    """A reason or an actor as every path takes it (admin, API, websocket, commands): one line of text (tabs and
    line breaks fold to spaces; NUL, BEL, ESC and every other control character refused), at most
    ``limit`` characters once stripped; ValueError naming the field otherwise."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be text, not {type(value).__name__}")
    value = value.translate(_FOLDED).strip()
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ValueError(f"{name}: must not contain control characters (found U+{ord(control):04X})")
    if required and not value:
        raise ValueError(f"a {name} is required" if name != "reason" else "a halt needs a reason")
    if len(value) > limit:
        raise ValueError(f"{name}: at most {limit} characters (got {len(value)})")
    return value


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def state_snapshot(state: TradingState) -> dict:
    return {
        "state": state.state,
        "reason": state.reason,
        # ISO 8601 UTC on the market clock, as DRF writes a time ("…Z"): the API, the pushes and risk_status alike
        "since": iso_z(state.since),
        "changed_by": state.changed_by,
        "pause_layer": state.pause_layer,
    }


def apply_state_change(
    state: TradingState, new_state: str, reason: str, actor: str, timestamp: int, *, layer: str = ""
) -> TradingState:
    """Transition a row the caller holds locked; a no-op when already there."""
    if new_state not in TradingState.State.values:
        raise ValueError(f"unknown trading state {new_state!r}")
    if state.state == new_state:
        return state
    old = state.state
    state.state, state.since = new_state, ms_to_datetime(timestamp)  # market time, as every time on the page
    state.reason, state.changed_by = _fit(reason, REASON_MAX), _fit(actor, ACTOR_MAX)
    state.pause_layer = layer if new_state != TradingState.State.ACTIVE else ""
    if new_state != TradingState.State.PAUSED:
        state.breaker_symbol, state.breaker_tries, state.breaker_checked_ms = "", 0, None
        state.breaker_price = None
    state.save()
    RiskEvent.objects.create(
        decision=RiskEvent.Decision.STATE_CHANGE,
        layer=layer or "state",
        reason=f"{old} → {new_state}: {reason}",
        details={"from": old, "to": new_state, "actor": actor},
        timestamp=timestamp,
    )
    AuditLog.objects.create(
        actor=actor,
        action=f"state:{new_state.lower()}",
        target="trading_state",
        old_value={"state": old},
        new_value={"state": new_state},
        reason=reason,
    )
    raise_alert(
        LEVEL_BY_STATE[new_state], "TRADING_STATE", state_change_message(new_state, reason, actor), timestamp=timestamp
    )
    snapshot = state_snapshot(state)
    transaction.on_commit(lambda: bus.notify_dashboard("trading_state", snapshot))
    return state


def no_state_from_the_future(now_ms: int) -> None:
    """A simulated market starts at ``now_ms``, maybe in the past: a fresh database's trading state, stamped by the
    wall clock, would be ahead of it. On one clock it is then ACTIVE since the market's start. (The commands that
    run the simulated market pass this to it: market data does not import the layers above it.)"""
    TradingState.load()
    TradingState.objects.filter(pk=1, since__gt=ms_to_datetime(now_ms)).update(since=ms_to_datetime(now_ms))


def change_state(
    new_state: str, reason: str, actor: str, *, timestamp: int | None = None, layer: str = ""
) -> TradingState:
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        stamp = timestamp if timestamp is not None else clock.now_ms()
        return apply_state_change(state, new_state, reason, actor, stamp, layer=layer)


def pause(layer: str, reason: str, *, timestamp: int | None = None) -> TradingState:
    """Automatic pause by a risk layer; never overrides a HALT."""
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        if state.state != TradingState.State.ACTIVE:
            return state
        stamp = timestamp if timestamp is not None else clock.now_ms()
        return apply_state_change(state, "PAUSED", reason, "risk", stamp, layer=layer)


def resume(layer: str, reason: str, *, timestamp: int | None = None) -> TradingState:
    """Automatic resume: only a pause made by the same layer is lifted, never a HALT."""
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        if state.state != TradingState.State.PAUSED or state.pause_layer != layer:
            return state
        stamp = timestamp if timestamp is not None else clock.now_ms()
        return apply_state_change(state, "ACTIVE", reason, "risk", stamp)


def halt(reason: str, actor: str, *, close_positions: bool = False, timestamp: int | None = None) -> TradingState:
    """A person halts trading: no further order executes anywhere. With ``close_positions`` the risk manager then
    closes every position at the first price known after the halt (the next candle of each symbol), and keeps
    closing until the account is flat — the only orders a halt lets through (``risk.desk``). ``timestamp``: the
    market time it is given at (an operator-commands file in a replay), else now."""
    reason = clean_text(reason, "reason", REASON_MAX, required=True)
    actor = clean_text(actor, "actor", ACTOR_MAX, required=True)
    return operator_command(OperatorCommand(HALT_CLOSE if close_positions else HALT, reason, actor), timestamp)


def release(reason: str, actor: str, *, timestamp: int | None = None) -> TradingState:
    """A person lifts a HALT (or a pause); trading is ACTIVE again. Releasing a drawdown halt (or a person's halt on
    top of one, which keeps its layer) always starts the day's drawdown again from the equity at the release
    (audited, and said in the state's reason): the person has seen the day's loss and let trading go on, so the limit
    counts from there — otherwise a small further dip would halt again against the day's old start. Any other halt's
    release leaves the day's start alone: a loss made while it held is still the day's loss."""
    reason = clean_text(reason, "reason", REASON_MAX, required=False) or "released"
    actor = clean_text(actor, "actor", ACTOR_MAX, required=True)
    return operator_command(OperatorCommand(RELEASE, reason, actor), timestamp)


def operator_command(command: OperatorCommand, timestamp: int | None = None) -> TradingState:
    """A person's command through the desk's operator input (``risk.desk.operate``), its effects carried out under
    the account lock at the market time ``timestamp`` (default now). The returned state says what the person is
    told (``outcome``)."""
    with transaction.atomic():
        state = TradingState.load(for_update=True)
        stamp = timestamp if timestamp is not None else clock.now_ms()

        def valued():  # the account now, against the day's stored start (no day roll-over here)
            rows = account_rows(lock=True)
            return account_state(rows, state.state, latest_prices(rows.priced_symbols(), stamp))

        desk_state = DeskState(state.state, state.pause_layer, state.reason)
        effects = operate(desk_state, command, valued, account_quote())
        if not effects and command.command == RELEASE:  # nothing to lift: said, and the attempt audited
            AuditLog.objects.create(
                actor=command.actor,
                action="state:active_already",
                target="trading_state",
                old_value={"state": state.state, "reason": state.reason},
                new_value={"state": state.state, "reason": state.reason},
                reason=command.reason,
            )
            state.already = (
                f"Trading is ACTIVE already (since {_since(state)}, by {state.changed_by or 'nobody'}): "
                "nothing to release"
            )
        for effect in effects:
            if isinstance(effect, ChangeState):
                apply_state_change(state, effect.new_state, effect.reason, effect.actor, stamp, layer=effect.layer)
                _hand_back_stale_pause(effect.new_state)
            elif isinstance(effect, AmendHalt):
                _amend_halt(state, effect, command)
            elif isinstance(effect, RestartDay):
                _restart_daily_drawdown(effect, command)
            elif isinstance(effect, RaiseAlert):
                raise_alert(effect.level, effect.code, effect.message, timestamp=stamp, symbol=effect.symbol)
        return state


def _hand_back_stale_pause(new_state: str) -> None:
    """A person changed the trading state to ``new_state``: it is theirs now, not the data-stale watch's
    (``marketdata.stale.handed_back``)."""
    watch = StaleWatchState.load(for_update=True)
    watch.paused_by_watch, watch.stale_symbols = False, list(handed_back(new_state, watch.stale_symbols))
    watch.save(update_fields=["paused_by_watch", "stale_symbols"])


def _amend_halt(state: TradingState, amend: AmendHalt, command: OperatorCommand) -> None:
    """Halted already: the state keeps both reasons (audited). Asked to close, a plain halt becomes a closing one; a
    closing halt (drawdown, operator_close) stays what it is, asked to close or not: a second halt must not silently
    stop a close-out under way, which goes on until the account is flat."""
    old = {"state": state.state, "reason": state.reason, "layer": state.pause_layer}
    state.reason, state.pause_layer = amend.reason, amend.layer  # merge_reasons fits it, newest reason kept
    state.save(update_fields=["reason", "pause_layer"])
    snapshot = state_snapshot(state)  # the halt's reasons grew: the dashboards show both at once
    transaction.on_commit(lambda: bus.notify_dashboard("trading_state", snapshot))
    AuditLog.objects.create(
        actor=command.actor,
        action="state:close_positions" if amend.closing else "state:halted_again",
        target="trading_state",
        old_value=old,
        new_value={"state": state.state, "reason": state.reason, "layer": state.pause_layer},
        reason=command.reason,
    )
    state.already = (
        f"Trading is HALTED already (since {_since(state)}): "
        + ("it now closes every position; " if amend.closing else "")
        + ("still closing positions until flat; " if amend.still_closing else "")
        + (
            "your reason is added to the halt's (its oldest part shortened to fit): "
            if state.reason.startswith("…")
            else "your reason is added to the halt's: "
        )
        + state.reason
    )


def outcome(state: TradingState) -> str:
    """What a person is told after their halt or release (commands, API, admin, dashboard): the state it made, or
    that trading was in it already."""
    return state.already or f"Trading {state.state}: {state.reason} (by {state.changed_by})"


def outcome_snapshot(state: TradingState) -> dict:
    """``state_snapshot`` with what the person is told: ``changed`` (false: it was in that state already) and
    ``message``."""
    return {**state_snapshot(state), "changed": not state.already, "message": outcome(state)}


def _since(state: TradingState) -> str:
    """When the state began, for people: ISO 8601 UTC on the market clock, labelled so (``risk_status``'s form)."""
    return f"{iso_utc(int(state.since.timestamp() * 1000))}, market time"


def _restart_daily_drawdown(restart: RestartDay, command: OperatorCommand) -> None:
    portfolio = Portfolio.load(for_update=True)
    portfolio.day_start_equity = restart.equity
    portfolio.save(update_fields=["day_start_equity", "updated_at"])
    AuditLog.objects.create(
        actor=command.actor,
        action="day_start_equity:restart",
        target="portfolio",
        old_value={"day_start_equity": str(restart.previous)},
        new_value={"day_start_equity": str(restart.equity)},
        reason=command.reason,
    )
