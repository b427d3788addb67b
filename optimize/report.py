"""The optimization's JSON document and its self-contained HTML page (inline SVG: no script, no CDN)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

import optuna
from optuna.trial import TrialState

from ground.timeutil import iso_z

from .tasks import ERROR, RESULT


def trial_rows(study: optuna.Study, fold: int | None = None) -> list[dict]:
    """Every finished trial: its parameters and what its backtest measured (failed and waiting ones left out)."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        result = trial.user_attrs.get(RESULT) or {}
        rows.append(
            {
                "number": trial.number,
                "fold": fold,
                "state": trial.state.name.lower(),
                "params": trial.params,
                "value": trial.value,
                "trades": result.get("trades"),
                "max_drawdown": result.get("max_drawdown_pct"),
                "total_return_pct": result.get("total_return_pct"),
                "duration": result.get("duration"),
                "candles": result.get("candles"),
                "pruned": result.get("pruned") or trial.user_attrs.get("refused"),
                "first_candle": result.get("first_candle"),
                "last_candle": result.get("last_candle"),
                "worker": result.get("worker"),
                "finished_at": iso_z(trial.datetime_complete.replace(tzinfo=UTC)) if trial.datetime_complete else None,
            }
        )
    return rows


def failed_rows(study: optuna.Study, fold: int | None = None) -> list[dict]:
    """The trials whose backtest raised and that no later trial asked again: number, parameters, error."""
    trials = study.get_trials(deepcopy=False)
    asked_again = {t.user_attrs.get("retry_of") for t in trials}
    return [
        {"number": t.number, "fold": fold, "params": t.params, "error": t.user_attrs[ERROR]}
        for t in trials
        if t.state == TrialState.FAIL and ERROR in t.user_attrs and t.number not in asked_again
    ]


def importance(study: optuna.Study) -> dict[str, float]:
    """Each parameter's share of the objective's variation (PED-ANOVA: numpy only; fANOVA would need sklearn)."""
    try:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except (ValueError, RuntimeError, ZeroDivisionError):  # too few complete trials, one value only, …
        return {}


def json_text(document: dict) -> str:
    return json.dumps(document, indent=1) + "\n"


# --- HTML ---------------------------------------------------------------------------------------------------
WIDTH, HEIGHT, PAD = 860, 260, 48


def _scale(values: list[float], low_px: float, high_px: float):
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return lambda v: low_px + (v - low) / span * (high_px - low_px), low, high


def _axes(y_low: float, y_high: float, x_label: str, y_label: str) -> str:
    return (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 10}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<text x="{PAD - 4}" y="16" text-anchor="end">{y_high:.4g}</text>'
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">{y_low:.4g}</text>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" text-anchor="middle">{html.escape(x_label)}</text>'
        f'<text x="12" y="{HEIGHT / 2}" transform="rotate(-90 12 {HEIGHT / 2})" text-anchor="middle">'
        f"{html.escape(y_label)}</text>"
    )


def trials_svg(trials: list[dict], objective: str) -> str:
    scored = [t for t in trials if t["value"] is not None]
    if not scored:
        return "<p>No scored trial.</p>"
    x, _, _ = _scale(list(range(len(trials))), PAD + 6, WIDTH - 16)
    y, low, high = _scale([t["value"] for t in scored], HEIGHT - PAD - 6, 16)
    dots, best_line, best = [], [], None
    for index, trial in enumerate(trials):
        if trial["value"] is None:
            continue
        title = html.escape(f"#{trial['number']} {trial['value']:.4g} {json.dumps(trial['params'])}")
        where = f'cx="{x(index):.1f}" cy="{y(trial["value"]):.1f}"'
        dots.append(f'<circle {where} r="3" class="dot"><title>{title}</title></circle>')
        best = trial["value"] if best is None else max(best, trial["value"])
        best_line.append(f"{x(index):.1f},{y(best):.1f}")
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="trials over time">'
        f"{_axes(low, high, 'trials in the order they finished', objective)}{''.join(dots)}"
        f'<polyline points="{" ".join(best_line)}" class="best"/></svg>'
    )


def importance_svg(shares: dict[str, float]) -> str:
    if not shares:
        return "<p>Not enough complete trials to rank the parameters.</p>"
    row = 26
    height = row * len(shares) + 10
    bars = []
    for index, (name, share) in enumerate(shares.items()):
        top = 5 + index * row
        length = share * (WIDTH - 260)
        bars.append(
            f'<text x="170" y="{top + 16}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="180" y="{top + 3}" width="{length:.1f}" height="{row - 8}" class="bar"/>'
            f'<text x="{186 + length:.1f}" y="{top + 16}">{100 * share:.1f} %</text>'
        )
    return f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="parameter importance">{"".join(bars)}</svg>'


def _best_window(document: dict) -> str:
    """Where the best run ran, when it is not the whole period (walk-forward: the last fold's in-sample part)."""
    if not document["walk_forward"]:
        return ""
    return html.escape(f" (the last fold's in-sample part, {document['equity_from']} – {document['equity_to']})")


def equity_svg(curve: list) -> str:
    if len(curve) < 2:
        return "<p>No equity curve.</p>"
    times, values = [c[0] for c in curve], [float(c[1]) for c in curve]
    x, _, _ = _scale(times, PAD + 2, WIDTH - 12)
    y, low, high = _scale(values, HEIGHT - PAD - 2, 14)
    points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, values, strict=True))
    first = datetime.fromtimestamp(times[0] / 1000, UTC).strftime("%Y-%m-%d")
    last = datetime.fromtimestamp(times[-1] / 1000, UTC).strftime("%Y-%m-%d")
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="equity">'
        f"{_axes(low, high, f'{first} … {last} (UTC)', 'equity')}"
        f'<polyline points="{points}" class="equity"/></svg>'
    )


def _figure(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_figure(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body{font:14px system-ui,sans-serif;margin:2em auto;max-width:900px;color:#222}
svg{width:100%;height:auto;background:#fafafa;border:1px solid #ddd}
svg text{font-size:11px;fill:#555}.axis{stroke:#999}.dot{fill:#4a7bd0;opacity:.7}
.best{fill:none;stroke:#d0552f;stroke-width:2}.bar{fill:#4a7bd0}.equity{fill:none;stroke:#2e9a5a;stroke-width:1.5}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f0f0f0}code{background:#f4f4f4;padding:2px 4px;word-break:break-all}
.overfit{color:#b3261e;font-weight:bold}
"""


def html_page(document: dict) -> str:
    best = document["best_params"]
    failed = f" · <b>{len(document['failed'])} failed</b>" if document["failed"] else ""
    parts = [
        f"<h1>Optimization {html.escape(document['study'])}</h1>",
        f"<p>{html.escape(document['strategy'])} · objective <b>{html.escape(document['objective'])}</b> · "
        f"{len(document['trials'])} finished trials{failed} · files {html.escape(', '.join(document['files']))}</p>",
        "<h2>Best parameters</h2>",
        _table(["parameter", "value"], [[k, v] for k, v in best.items()]) if best else "<p>No complete trial.</p>",
        f"<p>best {html.escape(document['objective'])}: {_figure(document['best_value'])}</p>",
        f"<p>Backtest them{_best_window(document)}: <code>{html.escape(document['backtest_command'] or '')}</code></p>",
    ]
    if document.get("whole_period_command"):
        parts.append(
            "<p>The last fold's best parameters over the whole period (not the best value's run): "
            f"<code>{html.escape(document['whole_period_command'])}</code></p>"
        )
    folds = document["walk_forward"]
    if folds:
        rows = []
        for fold in folds:
            inside, out = fold["in_sample"], fold["out_of_sample"]
            rows.append(
                [
                    fold["fold"],
                    f"{inside['from']} … {inside['to']}",
                    inside["value"],
                    out["value"],
                    inside["total_return_pct"],
                    out["total_return_pct"],
                    inside["trades"],
                    out["trades"],
                ]
            )
        parts += [
            "<h2>Walk-forward: in-sample vs out-of-sample</h2>",
            "<p>Each fold's best in-sample parameters scored on the candles that follow. An out-of-sample figure "
            "far below the in-sample one is an overfit.</p>",
            _table(
                [
                    "fold",
                    "in-sample period",
                    "IS value",
                    "OOS value",
                    "IS return %",
                    "OOS return %",
                    "IS trades",
                    "OOS trades",
                ],
                rows,
            ),
        ]
    parts += [
        "<h2>Trials over time</h2><p>Blue: each trial's value; red: the best so far.</p>",
        trials_svg(document["trials"], document["objective"]),
        "<h2>Parameter importance</h2>",
        importance_svg(document["importance"]),
        f"<h2>Best run's equity{_best_window(document)}</h2>",
        equity_svg(document["equity_curve"]),
        "<h2>Top trials</h2>",
    ]
    top = sorted((t for t in document["trials"] if t["value"] is not None), key=lambda t: -t["value"])[:20]
    names = list(top[0]["params"]) if top else []
    parts.append(
        _table(
            ["#", "fold", *names, "value", "trades", "max DD %", "return %", "s"],
            [
                [
                    t["number"],
                    t["fold"],
                    *(t["params"].get(n) for n in names),
                    t["value"],
                    t["trades"],
                    t["max_drawdown"],
                    t["total_return_pct"],
                    t["duration"],
                ]
                for t in top
            ],
        )
    )
    if document["failed"]:
        parts += [
            "<h2>Failed trials</h2><p>Their backtest raised; a resumed or extended run asks them again first.</p>",
            _table(
                ["#", "fold", "parameters", "error"],
                [
                    [t["number"], t["fold"], ", ".join(f"{k}={v}" for k, v in t["params"].items()), t["error"]]
                    for t in document["failed"]
                ],
            ),
        ]
    body = "\n".join(parts)
    title = html.escape(f"Optimization {document['study']}")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
