"""Operator commands from a file, for a backtest or a replay: what a person did, and when, in market time.

``manage.py backtest --operator-commands FILE`` and ``manage.py run_feed --source replay --operator-commands FILE``
read the same CSV, ``timestamp_ms,command[,reason]``, one command a row (an optional header line): ``halt``,
``halt_close`` (halt and close every position) or ``release``; a reason that holds commas is quoted. A command at
time T is given at the market time T, once every candle known by T (closed at or before T) has been dealt with, and
before any candle known after T: the shells hand it to the desk's operator input (``risk.desk.operate``), as the
admin, the API and ``manage.py halt`` do live. A bad row is refused before anything runs, naming its line.

No Django here: the backtest's core imports without it.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from ground.amounts import counted

from .desk import OPERATOR_COMMANDS, REASON_MAX, OperatorCommand

HEADER = "timestamp"
SECONDS_BEFORE = 100_000_000_000  # an epoch time below this is 1973 in milliseconds, 5138 in seconds


class OperatorCommandsError(ValueError):
    """A file of operator commands that cannot be used; the message names the file, the line and why."""


class TimedCommand(NamedTuple):
    timestamp_ms: int
    command: OperatorCommand
    line: int  # in its file


def read_operator_commands(path: str | Path) -> list[TimedCommand]:
    """The file's commands in time order (the file's order), each checked; OperatorCommandsError otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise OperatorCommandsError(f"{path}: cannot read it ({error})") from None
    actor = f"operator file {path.name}"
    commands: list[TimedCommand] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or (not commands and line.lower().startswith(HEADER)):
            continue
        try:
            command = _row(line, number, actor, path.name)
        except ValueError as error:
            raise OperatorCommandsError(f"{path}: line {number}: {error}: {raw!r}") from None
        if commands and command.timestamp_ms < commands[-1].timestamp_ms:
            raise OperatorCommandsError(
                f"{path}: line {number}: its time {command.timestamp_ms} is before the previous row's "
                f"{commands[-1].timestamp_ms}: list the commands in time order"
            )
        commands.append(command)
    if not commands:
        raise OperatorCommandsError(f"{path}: no command rows (timestamp_ms,command[,reason])")
    return commands


def _row(line: str, number: int, actor: str, name: str) -> TimedCommand:
    """One row, read as CSV: a reason that holds commas is quoted (``…,halt,"feed check, part 1"``); a row of
    more than three columns is refused (a column too many is a file misread, not a longer reason)."""
    try:
        fields = [field.strip() for field in next(csv.reader([line], strict=True))]
    except csv.Error as error:
        raise ValueError(f"not a CSV row ({error})") from None
    if len(fields) < 2:
        raise ValueError("expected timestamp_ms,command[,reason]")
    if len(fields) > 3:
        raise ValueError(
            f"{len(fields)} columns, expected at most 3: timestamp_ms,command[,reason] "
            '(quote a reason that holds commas: …,halt,"feed check, part 1")'
        )
    stamp, command = fields[0], fields[1].lower()
    if not (stamp.isascii() and stamp.isdigit()):
        raise ValueError(f"the time {stamp!r} is not epoch milliseconds")
    timestamp = int(stamp)
    if timestamp < SECONDS_BEFORE:
        raise ValueError(f"the time {stamp} is not epoch milliseconds (a time in seconds?)")
    if command not in OPERATOR_COMMANDS:
        raise ValueError(f"unknown command {fields[1]!r}: one of {', '.join(OPERATOR_COMMANDS)}")
    reason = fields[2] if len(fields) > 2 else ""
    if "\x00" in reason:
        raise ValueError("the reason must not contain NUL characters")
    if len(reason) > REASON_MAX:
        raise ValueError(f"the reason has {len(reason)} characters, at most {REASON_MAX}")
    return TimedCommand(timestamp, OperatorCommand(command, reason or f"{name} line {number}", actor), number)


class OperatorSchedule:
    """The commands still to give, oldest first: ``due(t)`` takes those given before the candles known at ``t``
    (their time is before ``t``)."""

    def __init__(self, commands: Iterable[TimedCommand] = ()) -> None:
        self._waiting = deque(commands)

    def due(self, now: int) -> list[TimedCommand]:
        waiting, taken = self._waiting, []
        while waiting and waiting[0].timestamp_ms < now:
            taken.append(waiting.popleft())
        return taken

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def not_given(self) -> str | None:
        """What is left once the data has ended, said (None: every command was given)."""
        if not self._waiting:
            return None
        first, count = self._waiting[0], len(self._waiting)
        return (
            f"{counted(count, 'operator command')} at or after the last candle's time "
            f"{'was' if count == 1 else 'were'} not given: first line {first.line}, {first.timestamp_ms},"
            f"{first.command.command}"
        )
