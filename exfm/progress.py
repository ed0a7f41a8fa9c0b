"""Progress of long work: a bar on a terminal, a log line every few seconds anywhere else.

tqdm draws a bar on a terminal and turns itself off when stderr is not one (`disable=None`), so in
an Airflow task (whose stderr is a socket), a DVC stage piped to a file or CI, minutes of training
showed nothing. `progress(...)` takes tqdm's arguments and returns tqdm's own bar on a terminal;
elsewhere a `LoggingBar`, which draws nothing and logs one INFO line through the `exfm.progress`
logger at most every `EXFM_PROGRESS_EVERY_S` seconds (default 10; 0: at every update), plus one
when the work ends:

    train fm 2026-01-07: 90.0k/200k rows (45%), 4.20k rows/s, elapsed 00:21, ETA 00:26
    train fm 2026-01-07: done, 200k rows in 00:47 (4.26k rows/s)

The rate is tqdm's smoothed one; the ETA is what remains at that rate.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from tqdm import tqdm

log = logging.getLogger("exfm.progress")
EVERY_S = 10.0


def every_s() -> float:
    """The interval between log lines: EXFM_PROGRESS_EVERY_S, else 10 s."""
    raw = os.environ.get("EXFM_PROGRESS_EVERY_S", "")
    try:
        value = float(raw) if raw else EVERY_S
    except ValueError:
        log.warning("EXFM_PROGRESS_EVERY_S=%r is not a number; logging every %g s", raw, EVERY_S)
        return EVERY_S
    return max(value, 0.0)


class _Nowhere:
    """A file that takes what tqdm writes and keeps nothing."""

    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


class LoggingBar(tqdm):
    """A tqdm that logs its state every `every_s` seconds instead of drawing a bar."""

    def __init__(self, *args: Any, every_s: float | None = None, **kwargs: Any) -> None:
        interval = globals()["every_s"]() if every_s is None else every_s
        kwargs.update(
            file=_Nowhere(),
            disable=False,
            mininterval=interval,
            maxinterval=max(interval, 1e-9),
            miniters=1,
            dynamic_ncols=False,
            delay=0,
            leave=False,  # the last line is close()'s
        )
        self._logged_close = False
        super().__init__(*args, **kwargs)
        self.miniters = 1  # tqdm raises miniters after a burst: keep the interval the only rule

    def _count(self, n: float) -> str:
        return self.format_sizeof(n) if self.unit_scale else f"{n:g}"

    def _rate(self, n: float, seconds: float) -> str:
        if not seconds:
            return f"? {self.unit}/s"
        rate = n / seconds
        return f"{self.format_sizeof(rate) if self.unit_scale else f'{rate:.3g}'} {self.unit}/s"

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None or not self.n:  # clearing the bar on close; nothing done yet
            return True
        d = self.format_dict
        rate = d["rate"] or (d["n"] / d["elapsed"] if d["elapsed"] else 0.0)  # smoothed
        done = f"{self._count(d['n'])}/{self._count(d['total'])}" if d["total"] else ""
        line = [f"{self.desc}: {done or self._count(d['n'])} {self.unit}"]
        if d["total"]:  # no total: no percentage or ETA
            line[0] += f" ({100 * d['n'] / d['total']:.0f}%)"
        line += [self._rate(rate, 1.0), f"elapsed {self.format_interval(d['elapsed'])}"]
        if d["total"] and rate:
            line.append(f"ETA {self.format_interval((d['total'] - d['n']) / rate)}")
        log.info(", ".join(line))
        return True

    def close(self) -> None:
        if not self.disable and not self._logged_close and self.n:  # nothing done: silent
            self._logged_close = True
            d = self.format_dict
            log.info(
                "%s: done, %s %s in %s (%s)",
                self.desc,
                self._count(d["n"]),
                self.unit,
                self.format_interval(d["elapsed"]),
                self._rate(d["n"], d["elapsed"]),
            )
        super().close()


def progress(*args: Any, **kwargs: Any) -> tqdm:
    """A progress bar for `tqdm(*args, **kwargs)`: tqdm's on a terminal, a LoggingBar elsewhere.
    `disable=True` turns both off (short work)."""
    if kwargs.get("disable") is True:
        return tqdm(*args, **kwargs)
    if sys.stderr is not None and sys.stderr.isatty():
        return tqdm(*args, **{**kwargs, "disable": False})
    kwargs.pop("disable", None)
    kwargs.pop("leave", None)
    return LoggingBar(*args, **kwargs)
