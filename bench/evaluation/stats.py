"""The statistics of a row: Sharpe, max drawdown, turnover, exposure, the same-vol benchmark, and
paired stationary-bootstrap intervals of Sharpe differences.
"""


from __future__ import annotations

import math

import numpy as np
import pandas as pd

BLOCK = 21


LEVEL = 0.90


# ------------------------------------------------------------------------------ statistics
def _sharpe(x: np.ndarray) -> np.ndarray:
    """Annualised Sharpe along the last axis (0 where the volatility is 0)."""
    m = x.mean(axis=-1)
    s = x.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, m / s * math.sqrt(252), 0.0)


def stationary_indices(n: int, reps: int, block: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``reps`` x ``n`` indices of a stationary bootstrap (Politis & Romano 1994): blocks
    start at uniform positions, their lengths are geometric with mean ``block``, the series wraps
    around."""
    start = rng.integers(0, n, size=(reps, n))
    new = rng.random((reps, n)) < 1.0 / block
    new[:, 0] = True
    pos = np.arange(n)
    last = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    return (np.take_along_axis(start, last, axis=1) + (pos - last)) % n


def bootstrap_sharpes(rows: dict[str, np.ndarray], reps: int, seed: int,
                      block: float = BLOCK) -> dict[str, np.ndarray]:
    """Resampled Sharpe ratios of every row on the SAME resampled days: name -> array(reps)."""
    names = list(rows)
    mat = np.vstack([rows[k] for k in names])
    n = mat.shape[1]
    rng = np.random.default_rng(seed)
    out = {k: np.empty(reps) for k in names}
    step = max(1, min(reps, 2_000_000 // max(1, n * len(names))))
    for lo in range(0, reps, step):
        k = min(step, reps - lo)
        idx = stationary_indices(n, k, block, rng)
        sh = _sharpe(mat[:, idx])  # rows x k
        for i, name in enumerate(names):
            out[name][lo:lo + k] = sh[i]
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples``."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def _max_dd(r: np.ndarray) -> float:
    w = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    return float(np.min(w / np.maximum.accumulate(w) - 1.0))


def row_stats(r: pd.Series, exposure: float, turnover: float) -> dict:
    """Sharpe, CAGR, max drawdown, volatility, turnover and exposure of one row."""
    x = r.to_numpy(dtype=float)
    years = len(x) / 252
    total = float(np.prod(1.0 + x))
    return {
        "sharpe": round(float(_sharpe(x)), 4),
        "cagr": round(total ** (1.0 / years) - 1.0 if years > 0 and total > 0 else -1.0, 5),
        "max_drawdown": round(_max_dd(x), 5),
        "vol": round(float(x.std(ddof=1) * math.sqrt(252)), 5),
        "turnover": round(turnover, 3),
        "exposure": round(exposure, 4),
    }


def _turnover(traded: pd.Series) -> float:
    years = len(traded) / 252
    return float(traded.sum()) / years if years > 0 else 0.0


def same_vol(bh: pd.Series, vol: float) -> tuple[pd.Series, float, float]:
    """Buy-and-hold scaled to ``vol``: (returns, scale, turnover of holding that scale)."""
    from bt_ibkr.metrics import constant_exposure_turnover

    v = float(bh.std(ddof=1) * math.sqrt(252))
    k = vol / v if v > 0 else 0.0
    return bh * k, k, constant_exposure_turnover(bh, k)


# ------------------------------------------------------------------------------ evaluation
def measured(frame: pd.DataFrame, warm: int) -> pd.DatetimeIndex:
    """The measured days: after the base day ``warm`` bars in (its close is the base)."""
    return pd.DatetimeIndex(frame.index)[warm + 1:]


def compare(rows: dict[str, tuple[pd.Series, float, float]], bh: pd.Series, reps: int,
            seed: int, ref: tuple[str, ...] = ("trend",)) -> dict:
    """Stats of each row with its Sharpe interval and paired intervals of its Sharpe
    difference against buy-and-hold (= B&H same vol) and against each ``ref`` row.

    ``rows``: name -> (returns, exposure, turnover) over the same days as ``bh``."""
    data = {k: v[0].to_numpy(dtype=float) for k, v in rows.items()}
    data["__bh"] = bh.to_numpy(dtype=float)
    boot = bootstrap_sharpes(data, reps, seed)
    out = {}
    for name, (r, ex, to) in rows.items():
        st = row_stats(r, ex, to)
        st["sharpe_ci"] = [round(v, 4) for v in interval(boot[name])]
        d = boot[name] - boot["__bh"]
        st["vs_bh"] = {"diff": round(st["sharpe"] - float(_sharpe(data["__bh"])), 4),
                       "ci": [round(v, 4) for v in interval(d)]}
        for other in ref:
            if other in rows and other != name:
                d = boot[name] - boot[other]
                st[f"vs_{other}"] = {
                    "diff": round(st["sharpe"] - float(_sharpe(data[other])), 4),
                    "ci": [round(v, 4) for v in interval(d)]}
        out[name] = st
    return out


def bh_row(bh: pd.Series, vol: float) -> dict:
    """The B&H same vol row for a row of volatility ``vol``."""
    r, k, to = same_vol(bh, vol)
    st = row_stats(r, k, to)
    st["sharpe_ci"] = None
    return st
