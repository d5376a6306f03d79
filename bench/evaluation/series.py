"""The daily series the evaluation runs on: the offline sample (^GSPC, ^IXIC), arch's WTI, seeded
synthetic series with planted regimes and a random walk, and CSV files.
"""


from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE = ("^GSPC", "^IXIC")


BUILTIN = ("^GSPC", "^IXIC", "WTI", "SYN_REGIME", "SYN_WALK")


# ------------------------------------------------------------------------------ data
def _ohlc_from_close(close: np.ndarray, rng: np.random.Generator, sd: np.ndarray) -> pd.DataFrame:
    prev = np.r_[close[0], close[:-1]]
    open_ = prev * np.exp(rng.normal(0.0, 0.2 * sd))
    top = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * sd)))
    bottom = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * sd)))
    return pd.DataFrame(
        {"open": open_, "high": top, "low": bottom, "close": close, "volume": 1e6}
    )


def synthetic_regime_path(seed: int = 11, n: int = 5040) -> tuple[pd.DataFrame, np.ndarray]:
    """Two-state Markov-switching daily bars and their planted state (1 = turbulent), seeded."""
    rng = np.random.default_rng(seed)
    mu = np.array([0.10, -0.30]) / 252
    sd = np.array([0.16, 0.40]) / math.sqrt(252)
    stay = np.array([1 - 1 / 200, 1 - 1 / 67])
    state = np.zeros(n, dtype=int)
    u = rng.random(n)
    for t in range(1, n):
        s = state[t - 1]
        state[t] = s if u[t] < stay[s] else 1 - s
    r = rng.normal(mu[state], sd[state])
    close = 100.0 * np.exp(np.cumsum(r))
    frame = _ohlc_from_close(close, rng, sd[state])
    frame.index = pd.bdate_range("1999-01-04", periods=n, name="date")
    return frame, state


def synthetic_regime(seed: int = 11, n: int = 5040) -> pd.DataFrame:
    """Two-state Markov-switching daily bars (see the module docstring), seeded."""
    return synthetic_regime_path(seed, n)[0]


def synthetic_walk(seed: int = 12, n: int = 5040) -> pd.DataFrame:
    """Geometric random walk daily bars (+6%/yr drift, 18% vol), seeded."""
    rng = np.random.default_rng(seed)
    sd = np.full(n, 0.18 / math.sqrt(252))
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.06 / 252, sd)))
    frame = _ohlc_from_close(close, rng, sd)
    frame.index = pd.bdate_range("1999-01-04", periods=n, name="date")
    return frame


def wti() -> pd.DataFrame:
    """WTI spot daily closes from arch (holidays dropped) as bars with open=high=low=close."""
    from arch.data import wti as wti_data

    close = wti_data.load()["DCOILWTICO"].dropna().astype(float)
    frame = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 0.0}
    )
    frame.index = pd.DatetimeIndex(close.index, name="date")
    return frame


def _naive(frame: pd.DataFrame) -> pd.DataFrame:
    idx = pd.DatetimeIndex(frame.index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    out = frame[["open", "high", "low", "close", "volume"]].astype(float).copy()
    out.index = idx.normalize().rename("date")
    return out


def load_series(name: str, csv: dict[str, Path] | None = None) -> pd.DataFrame:
    """Return the daily bars of a built-in series or of a ``--csv NAME=PATH`` one.

    Raises ConfigError for an unknown name, DataError for a CSV the csv source rejects."""
    from bt_ibkr.errors import ConfigError

    if csv and name in csv:
        from bt_ibkr.data.history import HistoryRequest, load_history

        hist = load_history(HistoryRequest(symbols=[name], source="csv", csv_paths=[csv[name]],
                                           use_cache=False, progress=False))
        return _naive(next(iter(hist.frames.values())))
    if name in SAMPLE:
        from feeds.sample import load_sample

        return _naive(load_sample(name, None, None))
    makers = {"WTI": wti, "SYN_REGIME": synthetic_regime, "SYN_WALK": synthetic_walk}
    if name not in makers:
        raise ConfigError(f"--series {name}: unknown; built-in: {', '.join(BUILTIN)}, or give "
                          f"--csv {name}=PATH")
    return makers[name]()
