"""The pages the platform writes for people: the data-drift report (data_checks/report.py), the
pipeline report (exfm/pipeline_report.py) and the results page (exfm/experiments/results.py).

One place for what they share: the page shell and its stylesheet (`templates/base.html`), each
page's template beside it (loaded from the package's files), the SVG charts (`svg.py`), and one
number formatter (`fmt`). Pages are static: inline CSS and SVG, no scripts, no external URL, so
they open offline from a file.

    render("drift_day.html", r=result, ...)   ->  the page's HTML
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup


def fmt(x: Any, spec: str = ".4g", missing: str = "") -> str:
    """A number as a page shows it: floats with `spec`, integers with thousands separators,
    `missing` for None, an empty value or a non-finite float."""
    if x is None or x == "" or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def trusted(markup: str) -> Markup:
    """Markup a template may insert as it is: the charts of exfm/reporting/svg.py, which escape
    every text they draw."""
    return Markup(markup)  # noqa: S704


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("exfm.reporting", "templates"),
        autoescape=True,
    )
    env.globals["fmt"] = fmt
    return env


def render(template: str, **context: Any) -> str:
    """The page `template` (a file of exfm/reporting/templates) rendered with `context`."""
    return _environment().get_template(template).render(**context)
