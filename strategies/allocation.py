"""The allocation table: per regime, which sleeves to blend, the regime's exposure and its cap.

The default is regimes as RISK SCALING, not sleeve switching (docs/RESULTS.md has the evidence):

    regime          trend  breakout  meanrev  rebound  hold   exposure   cap
    bull_quiet       1.0      -         -        -       -      1.0      1.0
    bull_volatile    1.0      -         -        -       -      1.0      1.0
    range            1.0      -         -        -       -      1.0      1.0
    bear_quiet       1.0      -         -        -       -      1.0      1.0
    crisis           1.0      -         -        -       -      0.0      1.0

Every regime blends the same sleeves (the trend sleeve); the regime only scales the
volatility-targeted position by its ``exposure``: 0 in crisis (a close under a falling 200-day
average with volatility in the top fifth of its year: the state where both trend and volatility
say "risk off"), 1 elsewhere, because volatility targeting already takes risk off when
volatility rises (bull_volatile) and a second cut would count it twice. Crisis holds CASH: no
sleeve buys a falling market in the default.

The previous default switched sleeves by regime (trend/breakout/meanrev in bull and range rows,
the rebound sleeve in bear_quiet and crisis, caps 1.0/0.8/0.6/0.5/0.25). On the evaluation
series it did not beat the trend sleeve alone, turned over 3-4x as much, and its rebound sleeve
bought falling markets; it is kept as the ``v1`` row of ``bench/evaluate_strategy.py``
(``weights``/``caps`` params reproduce it).

``weights``: a row's weights multiply each sleeve's signal; the blend is volatility-targeted
(blend x target_vol / realized vol, at most ``max_leverage``). ``exposure``: a multiplier of
that position (the regime's risk scale). ``cap``: a CEILING on the FINAL target of the feed
(after volatility targeting, exposure, the 1/N split and the cash buffer), as a fraction of the
feed's 1/N share of the portfolio.

:func:`resolve_table` turns the user's overrides, the ``sleeves`` selection and ``use_regimes``
into an :class:`AllocationTable` the Strategy reads once per bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bt_ibkr.errors import ConfigError

from .regime import REGIMES, WARMUP
from .sleeves import SLEEVES

__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_EXPOSURE",
    "DEFAULT_WEIGHTS",
    "V1_CAPS",
    "V1_WEIGHTS",
    "AllocationTable",
    "parse_sleeves",
    "resolve_table",
    "weighted_sleeves",
]


def _row(**w: float) -> dict[str, float]:
    return {s: float(w.get(s, 0.0)) for s in SLEEVES}


DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {r: _row(trend=1.0) for r in REGIMES}
DEFAULT_CAPS: dict[str, float] = {r: 1.0 for r in REGIMES}
DEFAULT_EXPOSURE: dict[str, float] = {**{r: 1.0 for r in REGIMES}, "crisis": 0.0}

# The previous default (sleeve switching), for comparisons (bench/evaluate_strategy.py "v1").
V1_WEIGHTS: dict[str, dict[str, float]] = {
    "bull_quiet": _row(trend=0.5, breakout=0.3, meanrev=0.2),
    "bull_volatile": _row(trend=0.4, breakout=0.3, meanrev=0.3),
    "range": _row(trend=0.2, breakout=0.2, meanrev=0.6),
    "bear_quiet": _row(rebound=1.0),
    "crisis": _row(rebound=1.0),
}
V1_CAPS: dict[str, float] = {
    "bull_quiet": 1.0,
    "bull_volatile": 0.8,
    "range": 0.6,
    "bear_quiet": 0.5,
    "crisis": 0.25,
}


@dataclass(frozen=True)
class AllocationTable:
    """Resolved table: ``rows[regime] = (weights in SLEEVES order, cap, exposure)``.

    ``rows`` has one entry per regime plus ``"warmup"`` (all zero). ``sleeves`` are the selected
    sleeve names; ``use_regimes`` False means every regime shares the static row.
    """

    rows: dict[str, tuple[tuple[float, ...], float, float]]
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


def _per_regime(what: str, given, into: dict[str, float]) -> None:
    if not given:
        return
    if not isinstance(given, dict):
        raise ConfigError(f"{what} must be a dict regime -> number, got {given!r}")
    for regime, val in given.items():
        if regime not in REGIMES:
            raise ConfigError(f"{what}: unknown regime {regime!r}; valid: {list(REGIMES)}")
        into[regime] = _number(f"{what}[{regime!r}]", val)


def _merge(weights: dict | None, caps: dict | None, exposure: dict | None = None):
    w = {r: dict(v) for r, v in DEFAULT_WEIGHTS.items()}
    c = dict(DEFAULT_CAPS)
    e = dict(DEFAULT_EXPOSURE)
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
    _per_regime("caps", caps, c)
    _per_regime("exposure", exposure, e)
    return w, c, e


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
    exposure: dict | None = None,
) -> AllocationTable:
    """Merge overrides into the default table and apply the ablation switches.

    ``weights`` maps regime -> {sleeve: weight} (sleeves missing from a row keep their
    default), ``caps`` maps regime -> cap. ``sleeves`` (see :func:`parse_sleeves`) keeps only
    the named sleeves: each regime's row is restricted to them and rescaled to the row's
    original sum (a row with no weight on any of them holds cash). ``use_regimes=False``
    replaces every row by one static row: the average of the five rows, restricted to the
    selected sleeves and rescaled to sum 1 (equal weights if the average gives them none, so a
    single sleeve always gets weight 1: its signal used directly with volatility targeting),
    with no cap beyond ``max_leverage`` and the cash buffer and an exposure of 1.
    ``exposure`` maps regime -> multiplier of the row's volatility-targeted position (the
    regime's risk scale; 0 holds cash in that regime).

    Returns an :class:`AllocationTable`. Raises :class:`ConfigError` naming an unknown regime
    or sleeve, or a negative/non-numeric value.
    """
    if not isinstance(use_regimes, bool):
        raise ConfigError(f"use_regimes must be true or false, got {use_regimes!r}")
    chosen = parse_sleeves(sleeves)
    w, c, e = _merge(weights, caps, exposure)
    zero = tuple(0.0 for _ in SLEEVES)
    rows: dict[str, tuple[tuple[float, ...], float, float]] = {}
    if use_regimes:
        for r in REGIMES:
            rows[r] = (_restrict(w[r], chosen, sum(w[r].values())), c[r], e[r])
    else:
        avg = {s: sum(w[r][s] for r in REGIMES) / len(REGIMES) for s in SLEEVES}
        if sum(avg[s] for s in chosen) <= 0.0:
            avg = {s: 1.0 for s in SLEEVES}
        static = (_restrict(avg, chosen, 1.0), math.inf, 1.0)
        for r in REGIMES:
            rows[r] = static
    rows[WARMUP] = (zero, 0.0, 0.0)
    return AllocationTable(rows=rows, sleeves=chosen, use_regimes=use_regimes)


def weighted_sleeves(table: AllocationTable) -> tuple[str, ...]:
    """Return the sleeves some row of ``table`` weighs (weight > 0), in :data:`SLEEVES` order.

    Only these can move a target: the Strategy computes no other sleeve.
    """
    return tuple(s for i, s in enumerate(SLEEVES) if any(row[0][i] for row in table.rows.values()))
