"""Incremental trend x volatility regime classifier (pure Python, causal, bar by bar).

One :class:`RegimeClassifier` per data feed is fed each bar's close and returns the regime
label after that bar. It only ever looks at closes up to the current one, so the labels of the
first t bars never change when more bars arrive (no look-ahead; tested).

Rules (every number is a field of :class:`RegimeParams` and a param of the Strategy):

* Trend, from SMA(``sma_long``=200) and its slope ``sma[t] / sma[t - slope_lookback] - 1``
  (``slope_lookback``=20): **up** if close > SMA and slope > +``slope_threshold``; **down** if
  close < SMA and slope < -``slope_threshold``; otherwise (price and slope disagree) **range**.
  ``slope_threshold`` defaults to 0: no dead-band. The minimum dwell below already stops a slope
  that hovers around zero from flipping the regime every bar, so a dead-band would only add a
  number to tune.
* Volatility: realized vol = sample stdev of the last ``vol_window``=20 daily log returns times
  sqrt(``annualization``=252), percentile-ranked within its trailing ``vol_rank_window``=252
  values (itself included). The vol state turns **high** when the rank rises above
  ``vol_high_enter``=0.80 and returns to **normal** only when it falls below
  ``vol_high_exit``=0.60 (hysteresis). The rank is only taken over a FULL window
  (``vol_rank_min`` defaults to ``vol_rank_window``): a rank over fewer values is another
  statistic. The window is one year, not DESIGN's two: a daily live session warms up on 730
  calendar days (~500 bars), which cannot hold the 524 bars a full 504-value rank needs, so a
  504-value rank there was always ranked over fewer values than the backtest's and the live
  label differed from the backtest's on about 1% of days (^GSPC, ^IXIC, WTI; on 0% with 252).
  ``vol_rank_window=504`` is the full two-year rank (523 warm-up bars: backtests only);
  ``vol_rank_min=252`` with it is the previous default (a rank over 252..504 values).
* Regime: up+normal -> ``bull_quiet``; up+high -> ``bull_volatile``; down+normal ->
  ``bear_quiet``; down+high -> ``crisis``; range (either vol state) -> ``range``.
* Optional HMM overlay (``use_hmm``): P(high-variance state) from
  :class:`strategies.hmm.HMMOverlay` (a fixed window of the trailing ``hmm_window``=1,260
  returns, refit every ``hmm_refit_every``=21 bars, forward filter only). It has its own
  hysteresis: the overlay turns **on** when P rises above ``hmm_promote_above``=0.8 and **off**
  only when it falls below ``hmm_release_below``=0.5. While on, a quiet regime is promoted to its
  volatile twin (bull_quiet -> bull_volatile, bear_quiet -> crisis); range and the volatile
  regimes are left alone. Before the first fit (1,260 returns, five years) there is no
  promotion - a daily live session warms up on ~500 bars, so there the overlay stays off.
* Minimum dwell: a regime, once entered, is held for at least ``min_dwell``=5 bars; after that
  the label follows the rules above on the bar they change (no confirmation lag). Crisis may
  enter at once (``crisis_immediate``, DESIGN §8): a raw crisis label cuts the current
  regime's hold short, because crisis is where the Strategy goes to cash and a late exit costs
  most. Every run of any regime but the one a crisis cut short lasts at least ``min_dwell``
  bars (tested). ``crisis_immediate=False`` is the previous rule (crisis waits for the hold).
* Warm-up: until the SMA exists with its slope (``sma_long + slope_lookback`` bars) and the
  vol rank has ``vol_rank_min`` realized-vol values (``vol_window + vol_rank_min`` bars), the
  label is ``"warmup"`` (the Strategy holds cash): 271 bars with the defaults (the first
  regime is on bar 272, see :func:`warmup_bars`). The first label after warm-up is taken at
  once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

from bt_ibkr.errors import ConfigError, DataError

from .hmm import HMMOverlay
from .rolling import RollingMean, RollingRank, RollingStd

__all__ = [
    "REGIMES",
    "WARMUP",
    "DwellFilter",
    "RegimeClassifier",
    "RegimeParams",
    "label_series",
    "vol_high_next",
    "warmup_bars",
]

REGIMES = ("bull_quiet", "bull_volatile", "range", "bear_quiet", "crisis")
WARMUP = "warmup"

_PROMOTE = {"bull_quiet": "bull_volatile", "bear_quiet": "crisis"}


@dataclass(frozen=True)
class RegimeParams:
    """Numbers of the regime classifier; the Strategy's params of the same names feed them."""

    sma_long: int = 200
    slope_lookback: int = 20
    slope_threshold: float = 0.0
    vol_window: int = 20
    vol_rank_window: int = 252
    vol_rank_min: int | None = None  # None: the full window
    vol_high_enter: float = 0.80
    vol_high_exit: float = 0.60
    min_dwell: int = 5
    crisis_immediate: bool = True
    annualization: float = 252.0
    use_hmm: bool = False
    hmm_window: int = 1260
    hmm_refit_every: int = 21
    hmm_promote_above: float = 0.8
    hmm_release_below: float = 0.5
    hmm_max_iter: int = 50

    def __post_init__(self):
        if self.vol_rank_min is None:
            object.__setattr__(self, "vol_rank_min", self.vol_rank_window)
        for name in (
            "sma_long",
            "slope_lookback",
            "vol_window",
            "vol_rank_window",
            "vol_rank_min",
            "min_dwell",
            "hmm_window",
            "hmm_refit_every",
            "hmm_max_iter",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"regime param {name} must be an int >= 1, got {v!r}")
        if not isinstance(self.crisis_immediate, bool):
            raise ConfigError(
                f"regime param crisis_immediate must be true or false, got {self.crisis_immediate!r}"
            )
        if self.vol_window < 2:
            raise ConfigError(f"regime param vol_window must be >= 2, got {self.vol_window!r}")
        if self.hmm_window < 10:
            raise ConfigError(f"regime param hmm_window must be >= 10, got {self.hmm_window!r}")
        if self.vol_rank_min > self.vol_rank_window:
            raise ConfigError(
                f"regime param vol_rank_min ({self.vol_rank_min}) must not exceed "
                f"vol_rank_window ({self.vol_rank_window})"
            )
        if not 0.0 <= self.vol_high_exit <= self.vol_high_enter <= 1.0:
            raise ConfigError(
                "regime params need 0 <= vol_high_exit <= vol_high_enter <= 1, got "
                f"vol_high_exit={self.vol_high_exit!r}, vol_high_enter={self.vol_high_enter!r}"
            )
        if not 0.0 <= self.hmm_release_below <= self.hmm_promote_above <= 1.0:
            raise ConfigError(
                "regime params need 0 <= hmm_release_below <= hmm_promote_above <= 1, got "
                f"hmm_release_below={self.hmm_release_below!r}, "
                f"hmm_promote_above={self.hmm_promote_above!r}"
            )
        if not self.slope_threshold >= 0.0:
            raise ConfigError(
                f"regime param slope_threshold must be >= 0, got {self.slope_threshold!r}"
            )
        if not self.annualization > 0.0:
            raise ConfigError(f"regime param annualization must be > 0, got {self.annualization!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Field names, i.e. the Strategy params that configure the classifier."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: dict) -> RegimeParams:
        """Build from a mapping that may hold other keys too (e.g. all Strategy params)."""
        names = cls.names()
        return cls(**{k: v for k, v in values.items() if k in names})


def warmup_bars(p: RegimeParams | None = None) -> int:
    """Number of leading bars labelled ``"warmup"`` (271 with the defaults)."""
    p = p if p is not None else RegimeParams()
    return max(p.sma_long + p.slope_lookback, 1 + p.vol_window + p.vol_rank_min - 1) - 1


def vol_high_next(high: bool, rank: float, enter: float, exit_: float) -> bool:
    """Hysteresis step: the new vol state given the old one and today's percentile rank.

    Normal -> high when ``rank > enter``; high -> normal when ``rank < exit_``; else unchanged.
    """
    if high:
        return not rank < exit_
    return rank > enter


class DwellFilter:
    """Minimum-dwell (hold-time) filter on a stream of raw regime labels.

    ``update(raw)`` returns the held label: the first label is taken at once; afterwards the
    held label changes to ``raw`` on the first bar that differs from it once the held label
    has lasted ``min_dwell`` bars. A label in ``immediate`` (the classifier passes
    ``{"crisis"}`` when ``crisis_immediate``) is taken on its first raw bar even inside a hold:
    it cuts the held regime short. Every other run of the output lasts at least ``min_dwell``
    bars (the last one may be cut by the end of the data), and a switch is never later than the
    raw label by more than ``min_dwell - 1`` bars (none after a long stay, none into an
    ``immediate`` label).
    """

    __slots__ = ("min_dwell", "immediate", "current", "held")

    def __init__(self, min_dwell: int = 5, immediate=()):
        if isinstance(min_dwell, bool) or not isinstance(min_dwell, int) or min_dwell < 1:
            raise ConfigError(f"DwellFilter: min_dwell must be an int >= 1, got {min_dwell!r}")
        self.min_dwell = min_dwell
        self.immediate = frozenset(immediate)
        self.current: str | None = None
        self.held = 0

    def update(self, raw: str) -> str:
        """Feed one raw label; return the held label after it."""
        cur = self.current
        if cur is None or (raw != cur and (self.held >= self.min_dwell or raw in self.immediate)):
            self.current = raw
            self.held = 1
            return raw
        self.held += 1
        return cur


class RegimeClassifier:
    """Causal regime state machine for one price series.

    ``update(close)`` returns the regime after this bar (one of :data:`REGIMES` or
    ``"warmup"``). Public attributes after each update: ``regime``, ``raw`` (label before the
    dwell filter), ``trend`` ("up"/"down"/"range" or None), ``sma`` (None in warm-up),
    ``slope``, ``realized_vol`` (annualised, None before ``vol_window`` returns), ``vol_rank``,
    ``vol_high`` (bool), ``p_high`` (HMM P(high-variance), None without a fit), ``hmm_on``
    (the overlay's hysteresis state), ``bars``.

    Raises :class:`DataError` for a non-finite or non-positive close (log returns need prices
    > 0); the state is left unchanged in that case.
    """

    __slots__ = (
        "p",
        "_sma",
        "_sma_hist",
        "_rstd",
        "_rank",
        "_hmm",
        "_prev_close",
        "_ann",
        "_dwell",
        "regime",
        "raw",
        "trend",
        "sma",
        "slope",
        "realized_vol",
        "vol_rank",
        "vol_high",
        "p_high",
        "hmm_on",
        "bars",
        "last_return",
    )

    def __init__(self, params: RegimeParams | None = None):
        p = params if params is not None else RegimeParams()
        self.p = p
        self._sma = RollingMean(p.sma_long)
        self._sma_hist: deque[float] = deque(maxlen=p.slope_lookback + 1)
        self._rstd = RollingStd(p.vol_window)
        self._rank = RollingRank(p.vol_rank_window, p.vol_rank_min)
        self._hmm = (
            HMMOverlay(
                window=p.hmm_window,
                refit_every=p.hmm_refit_every,
                min_history=p.hmm_window,
                max_iter=p.hmm_max_iter,
            )
            if p.use_hmm
            else None
        )
        self._prev_close: float | None = None
        self._ann = math.sqrt(p.annualization)
        self._dwell = DwellFilter(p.min_dwell, ("crisis",) if p.crisis_immediate else ())
        self.regime = WARMUP
        self.raw = WARMUP
        self.trend: str | None = None
        self.sma: float | None = None
        self.slope: float | None = None
        self.realized_vol: float | None = None
        self.vol_rank: float | None = None
        self.vol_high = False
        self.p_high: float | None = None
        self.hmm_on = False
        self.bars = 0
        self.last_return: float | None = None

    @property
    def hmm_fits(self) -> int:
        """How many times the HMM overlay has been fitted (0 without ``use_hmm``)."""
        return self._hmm.fits if self._hmm is not None else 0

    def update(self, close: float) -> str:
        """Feed one bar's close; return the regime label after it."""
        if not close > 0.0 or close == math.inf:
            raise DataError(
                f"regime classifier: close must be a finite price > 0, got {close!r} at bar "
                f"{self.bars + 1}; validate the feed (DESIGN §9)"
            )
        p = self.p
        self.bars += 1
        prev = self._prev_close
        self._prev_close = close
        if prev is not None:
            r = math.log(close / prev)
            self.last_return = r
            rv = self._rstd.update(r)
            if rv is not None:
                rv *= self._ann
                self.realized_vol = rv
                rank = self._rank.update(rv)
                if rank is not None:
                    self.vol_rank = rank
                    self.vol_high = vol_high_next(
                        self.vol_high, rank, p.vol_high_enter, p.vol_high_exit
                    )
            if self._hmm is not None:
                ph = self._hmm.update(r)
                self.p_high = ph
                if ph is not None:
                    self.hmm_on = vol_high_next(
                        self.hmm_on, ph, p.hmm_promote_above, p.hmm_release_below
                    )
        sma = self._sma.update(close)
        if sma is None:
            return self.regime
        hist = self._sma_hist
        hist.append(sma)
        self.sma = sma
        if len(hist) <= p.slope_lookback or self.vol_rank is None:
            return self.regime
        slope = sma / hist[0] - 1.0
        self.slope = slope
        thr = p.slope_threshold
        high = self.vol_high
        if close > sma and slope > thr:
            self.trend = "up"
            raw = "bull_volatile" if high else "bull_quiet"
        elif close < sma and slope < -thr:
            self.trend = "down"
            raw = "crisis" if high else "bear_quiet"
        else:
            self.trend = "range"
            raw = "range"
        if self.hmm_on:
            raw = _PROMOTE.get(raw, raw)
        self.raw = raw
        self.regime = reg = self._dwell.update(raw)
        return reg


def label_series(closes, **params) -> list[str]:
    """Run :class:`RegimeClassifier` over ``closes`` (any iterable of floats).

    ``params`` are :class:`RegimeParams` fields (e.g. ``use_hmm=True``, ``min_dwell=3``).
    Returns one label per close: a member of :data:`REGIMES` or ``"warmup"``.
    Raises :class:`ConfigError` naming an unknown parameter, :class:`DataError` for a bad close.
    """
    unknown = sorted(set(params) - set(RegimeParams.names()))
    if unknown:
        raise ConfigError(
            f"label_series: unknown parameter(s) {unknown}; valid: {list(RegimeParams.names())}"
        )
    clf = RegimeClassifier(RegimeParams(**params))
    upd = clf.update
    return [upd(float(c)) for c in closes]
