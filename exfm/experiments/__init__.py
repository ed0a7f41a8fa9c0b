"""The ExFM results: `exfm experiment NAME [--quick]` (see exfm/experiments/suite.py for what each
experiment measures, exfm/experiments/results.py for the results page).

ORDER is importable on its own (the command line's choices come from it): EXPERIMENTS and Context
load the suite, and with it torch, on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exfm.experiments.suite import EXPERIMENTS, Context

ORDER = (
    "tune",
    "ladder",
    "freshness",
    "scaling",
    "history",
    "amortization",
    "obd",
    "robustness",
    "results",
)

__all__ = ["EXPERIMENTS", "ORDER", "Context"]


def __getattr__(name: str) -> Any:
    if name in ("EXPERIMENTS", "Context"):
        from exfm.experiments import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
