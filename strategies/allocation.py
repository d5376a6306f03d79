"""The weight table of the ensemble: which sleeves each regime blends, and each regime's cap.

The table is a priori (written down from what each regime means, never fitted to prices):

    regime          trend  breakout  meanrev  rebound  hold    cap
    bull_quiet       0.5     0.3      0.2      -        -     1.00
    bull_volatile    0.4     0.3      0.3      -        -     0.80
    range            0.2     0.2      0.6      -        -     0.60
    bear_quiet        -       -        -      1.0       -     0.50
    crisis            -       -        -      1.0       -     0.25

In a bull or range market the trend-following sleeves and the buy-the-dip sleeve share the
budget; below a falling 200-day average (bear_quiet, crisis) trend, breakout and meanrev are
flat by construction (their entry rules need an uptrend or a close above the average), so those
rows use the defensive ``rebound`` sleeve: long only on a short-term oversold bar, out on the
first close above SMA(5), and never more than half (bear_quiet) or a quarter (crisis) of the
feed's budget. That choice was made on ^GSPC 1999-2008 only, against explicit cash and a
volatility-managed hold (``bench/evaluate_strategy.py``, docs/RESULTS.md).

A cap is a ceiling on the FINAL target of the feed (after volatility targeting, the 1/N split
and the cash buffer), as a fraction of the feed's 1/N share of the portfolio.

:func:`resolve_table` turns the user's overrides, the ``sleeves`` selection and ``use_regimes``
into a :class:`AllocationTable` the Strategy reads once per bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bt_ibkr.errors import ConfigError

from .regime import REGIMES, WARMUP
from .sleeves import SLEEVES

__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_WEIGHTS",
    "AllocationTable",
    "parse_sleeves",
    "resolve_table",
]


def _row(**w: float) -> dict[str, float]:
    return {s: float(w.get(s, 0.0)) for s in SLEEVES}


DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "bull_quiet": _row(trend=0.5, breakout=0.3, meanrev=0.2),
    "bull_volatile": _row(trend=0.4, breakout=0.3, meanrev=0.3),
    "range": _row(trend=0.2, breakout=0.2, meanrev=0.6),
    "bear_quiet": _row(rebound=1.0),
    "crisis": _row(rebound=1.0),
}
DEFAULT_CAPS: dict[str, float] = {
    "bull_quiet": 1.0,
    "bull_volatile": 0.8,
    "range": 0.6,
    "bear_quiet": 0.5,
    "crisis": 0.25,
}


@dataclass(frozen=True)
class AllocationTable:
    """Resolved table: ``rows[regime] = (weights in SLEEVES order, cap)``.

    ``rows`` has one entry per regime plus ``"warmup"`` (all zero). ``sleeves`` are the selected
    sleeve names; ``use_regimes`` False means every regime shares the static row.
    """

    rows: dict[str, tuple[tuple[float, ...], float]]
    sleeves: tuple[str, ...]
    use_regimes: bool


def _number(what: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {v!r}")
    return float(v)


def parse_sleeves(value) -> tuple[str, ...]:
    """Return the selected sleeve names, in :data:`SLEEVES` order.

    ``value`` is ``"all"`` / ``None`` / ``""`` (every sleeve), a comma-separated string
    (``"trend,meanrev"``) or a tuple/list of names. Raises :class:`ConfigError` (a ValueError)
    naming an unknown sleeve and listing the valid ones, or when nothing is selected.
    """
    if value is None:
        return SLEEVES
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "all"):
            return SLEEVES
        names = [n.strip() for n in text.split(",")]
    elif isinstance(value, (tuple, list, set, frozenset)):
        names = [str(n).strip() for n in value]
    else:
        raise ConfigError(
            f"sleeves must be 'all', a comma-separated string or a tuple of names, got {value!r}"
        )
    names = [n for n in names if n]
    for n in names:
        if n not in SLEEVES:
            raise ConfigError(f"sleeves: unknown sleeve {n!r}; valid: {', '.join(SLEEVES)}")
    if not names:
        raise ConfigError(f"sleeves selects nothing ({value!r}); valid: {', '.join(SLEEVES)}")
    return tuple(s for s in SLEEVES if s in names)


def _merge(weights: dict | None, caps: dict | None):
    w = {r: dict(v) for r, v in DEFAULT_WEIGHTS.items()}
    c = dict(DEFAULT_CAPS)
    if weights:
        if not isinstance(weights, dict):
            raise ConfigError(
                f"weights must be a dict regime -> {{sleeve: weight}}, got {weights!r}"
            )
        for regime, row in weights.items():
            if regime not in REGIMES:
                raise ConfigError(f"weights: unknown regime {regime!r}; valid: {list(REGIMES)}")
            if not isinstance(row, dict):
                raise ConfigError(
                    f"weights[{regime!r}] must be a dict sleeve -> weight, got {row!r}"
                )
            for sleeve, val in row.items():
                if sleeve not in SLEEVES:
                    raise ConfigError(
                        f"weights[{regime!r}]: unknown sleeve {sleeve!r}; valid: {list(SLEEVES)}"
                    )
                w[regime][sleeve] = _number(f"weights[{regime!r}][{sleeve!r}]", val)
    if caps:
        if not isinstance(caps, dict):
            raise ConfigError(f"caps must be a dict regime -> gross cap, got {caps!r}")
        for regime, val in caps.items():
            if regime not in REGIMES:
                raise ConfigError(f"caps: unknown regime {regime!r}; valid: {list(REGIMES)}")
            c[regime] = _number(f"caps[{regime!r}]", val)
    return w, c


def _restrict(row: dict[str, float], chosen: tuple[str, ...], total: float) -> tuple[float, ...]:
    """Row restricted to ``chosen``, rescaled so its weights sum to ``total`` (0 if none)."""
    sub = sum(row[s] for s in chosen)
    k = total / sub if sub > 0.0 else 0.0
    return tuple(row[s] * k if s in chosen else 0.0 for s in SLEEVES)


def resolve_table(
    weights: dict | None = None,
    caps: dict | None = None,
    sleeves=None,
    use_regimes: bool = True,
) -> AllocationTable:
    """Merge overrides into the default table and apply the ablation switches.

    ``weights`` maps regime -> {sleeve: weight} (sleeves missing from a row keep their
    default), ``caps`` maps regime -> cap. ``sleeves`` (see :func:`parse_sleeves`) keeps only
    the named sleeves: each regime's row is restricted to them and rescaled to the row's
    original sum (a row with no weight on any of them holds cash). ``use_regimes=False``
    replaces every row by one static row: the average of the five rows, restricted to the
    selected sleeves and rescaled to sum 1 (equal weights if the average gives them none, so a
    single sleeve always gets weight 1: its signal used directly with volatility targeting),
    with no cap beyond ``max_leverage`` and the cash buffer.

    Returns an :class:`AllocationTable`. Raises :class:`ConfigError` naming an unknown regime
    or sleeve, or a negative/non-numeric value.
    """
    if not isinstance(use_regimes, bool):
        raise ConfigError(f"use_regimes must be true or false, got {use_regimes!r}")
    chosen = parse_sleeves(sleeves)
    w, c = _merge(weights, caps)
    zero = tuple(0.0 for _ in SLEEVES)
    rows: dict[str, tuple[tuple[float, ...], float]] = {}
    if use_regimes:
        for r in REGIMES:
            rows[r] = (_restrict(w[r], chosen, sum(w[r].values())), c[r])
    else:
        avg = {s: sum(w[r][s] for r in REGIMES) / len(REGIMES) for s in SLEEVES}
        if sum(avg[s] for s in chosen) <= 0.0:
            avg = {s: 1.0 for s in SLEEVES}
        static = (_restrict(avg, chosen, 1.0), math.inf)
        for r in REGIMES:
            rows[r] = static
    rows[WARMUP] = (zero, 0.0)
    return AllocationTable(rows=rows, sleeves=chosen, use_regimes=use_regimes)
