"""Walk-forward folds: the period cut in K consecutive, non-overlapping folds; each fold's first
``IN_SAMPLE_SHARE`` is optimized on, the rest (the candles that follow) scores the best parameters. Pure."""

from __future__ import annotations

from dataclasses import dataclass

IN_SAMPLE_SHARE = 0.75


@dataclass(frozen=True)
class Fold:
    """Inclusive candle-time bounds (epoch ms) of the in-sample and the out-of-sample part."""

    number: int
    in_sample: tuple[int, int]
    out_of_sample: tuple[int, int]

    def as_dict(self) -> dict:
        return {"fold": self.number, "in_sample": list(self.in_sample), "out_of_sample": list(self.out_of_sample)}


def walk_forward(timestamps: list[int] | tuple[int, ...], k: int) -> list[Fold]:
    """K folds over the distinct candle times (sorted), cut by time so each fold spans the same stretch; every
    part holds at least one candle time, else ValueError."""
    times = sorted(set(timestamps))
    if k < 1:
        raise ValueError("--walk-forward needs at least 1 fold")
    if len(times) < 2 * k:
        raise ValueError(f"--walk-forward {k}: {len(times)} candle times are too few for {k} folds")
    first, last = times[0], times[-1]
    span = (last - first + 1) / k
    folds = []
    for number in range(k):
        begin = first + round(number * span)
        stop = first + round((number + 1) * span) - 1 if number < k - 1 else last
        split = begin + round((stop - begin + 1) * IN_SAMPLE_SHARE)  # the first out-of-sample time
        inside = [t for t in times if begin <= t <= stop]
        in_sample = [t for t in inside if t < split]
        out = [t for t in inside if t >= split]
        if not in_sample or not out:
            raise ValueError(f"--walk-forward {k}: fold {number + 1} has no candles on one side of its split")
        folds.append(Fold(number + 1, (in_sample[0], in_sample[-1]), (out[0], out[-1])))
    return folds
