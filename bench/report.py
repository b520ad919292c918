"""Summaries and plain-text tables for the benchmarks' output."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation); NaN for no values."""
    clean = [v for v in values if not math.isnan(v)]
    return float(np.percentile(clean, q)) if clean else math.nan


def p50(values: Sequence[float]) -> float:
    return pct(values, 50)


def p95(values: Sequence[float]) -> float:
    return pct(values, 95)


def fmt(value: float, digits: int = 1) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def span(values: Sequence[float], digits: int = 1) -> str:
    """ "min–max" of the values."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return "—"
    return f"{min(clean):.{digits}f}–{max(clean):.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table with columns padded to their widest cell."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
