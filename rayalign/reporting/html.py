"""The Jinja2 environment the report pages are rendered with: templates shipped in
`rayalign/reporting/templates/`, autoescaping on (answers and prompts are data, never
markup), and the number formats the pages use."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from rayalign.runs import write_atomic


def number(value) -> str:
    """A figure as a reader wants it: thousands separated, about four significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return str(value)
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def score(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def signed(value) -> str:
    return "+" + number(value) if isinstance(value, (int, float)) and value > 0 else number(value)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("rayalign.reporting"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(number=number, score=score, signed=signed)
    return env


def write_page(template: str, out: Path, **context) -> Path:
    write_atomic(out, environment().get_template(template).render(**context))
    return out
