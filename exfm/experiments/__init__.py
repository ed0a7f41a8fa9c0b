"""The ExFM results: `exfm experiment NAME [--quick]` (see exfm/experiments/suite.py for what each
experiment measures, exfm/experiments/results.py for the results page)."""

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
