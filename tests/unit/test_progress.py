"""Progress of long work off a terminal (exfm/progress.py): log lines with the rate, the elapsed
time and the ETA at a steady interval, one at the end, none before anything was done."""

from __future__ import annotations

import logging
import re
import time

import pytest

from exfm.progress import LoggingBar, every_s, progress


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "exfm.progress"]


def test_off_a_terminal_the_bar_logs_its_state_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="exfm.progress")
    bar = progress(
        total=200_000,
        desc="train fm 2026-01-07",
        unit="rows",
        unit_scale=True,
        disable=None,
        leave=False,
        every_s=0,
    )
    assert isinstance(bar, LoggingBar)  # pytest's stderr is not a terminal
    with bar:
        for _ in range(4):
            bar.update(50_000)
    lines = _lines(caplog)
    assert re.fullmatch(
        r"train fm 2026-01-07: 50\.0k/200k rows \(25%\), [\d.]+[kMGT]? rows/s, elapsed 00:00, "
        r"ETA 00:0\d",
        lines[0],
    ), lines[0]
    assert re.fullmatch(
        r"train fm 2026-01-07: done, 200k rows in 00:00 \([\d.]+[kMGT]? rows/s\)", lines[-1]
    )
    assert len(lines) == 5  # one per update, then the end; none at 0 rows


def test_the_interval_bounds_the_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exfm.progress")
    with progress(total=1000, desc="slow", unit="rows", every_s=0.2) as bar:
        for _ in range(10):  # ~0.3 s of work: the first update, maybe one more, and the end
            time.sleep(0.03)
            bar.update(100)
    lines = _lines(caplog)
    assert 2 <= len(lines) <= 4, lines
    assert lines[-1].startswith("slow: done, 1000 rows in ")


def test_short_work_stays_silent_and_the_interval_is_read_from_the_environment(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="exfm.progress")
    for _ in progress(range(3), desc="one day", disable=True):
        pass
    assert _lines(caplog) == []
    monkeypatch.setenv("EXFM_PROGRESS_EVERY_S", "2.5")
    assert every_s() == 2.5
    monkeypatch.setenv("EXFM_PROGRESS_EVERY_S", "soon")
    assert every_s() == 10.0 and "is not a number" in caplog.text
