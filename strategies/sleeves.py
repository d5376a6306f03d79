"""The signal sleeves of the ensemble, computed incrementally per data feed.

Each sleeve is a signal in {0.0, 1.0} (long or flat), updated once per bar from that bar's
close/high/low and the long SMA the regime classifier already computes. :data:`SLEEVES` lists
them in the order :meth:`Sleeves.update` returns them:

* **trend**: 1 while SMA(``sma_fast``=50) > SMA(``sma_long``=200), else 0.
* **breakout** (Donchian): enters 1 when the close exceeds the highest high of the PREVIOUS
  ``breakout_entry``=55 bars; exits to 0 when the close falls below the lowest low of the
  PREVIOUS ``breakout_exit``=20 bars; otherwise keeps its state.
* **meanrev** (mean reversion): enters 1 when Wilder RSI(``rsi_period``=2) < ``rsi_entry``=10
  and the close is above the long SMA; exits to 0 when the close is above
  SMA(``meanrev_exit_sma``=5), but not before it has been held ``meanrev_min_hold``=5 bars (as
  long as the exit average spans): a one-bar pop above SMA(5) no longer ends the trade, which
  trades fewer round trips for the same entries. ``meanrev_min_hold=1`` is the previous rule.
* **rebound**: the same rule mirrored below the long SMA - enters 1 when RSI(2) < 10 and the
  close is BELOW the long SMA (a short-term oversold bar in a down market); exits to 0 when the
  close is above SMA(5). It is the only sleeve that can be long while the price is under its
  200-day average, where bear_quiet and crisis live, so it BUYS FALLING MARKETS: it is not
  defensive. Two stops bound it: it exits on a close below the lowest close of the
  ``rebound_stop_low``=10 bars before it (a new 10-day low: the bounce it bet on did not
  come), and after ``rebound_max_hold``=5 bars in any case (a 2-day oversold bounce that has
  not come in a week is not coming). 0 turns a stop off. After a stop it waits for the close
  to rise above SMA(5) before it may enter again, so a crash cannot re-trigger it every bar.
* **hold**: 1 on every bar once the long SMA exists. On its own with volatility targeting it is
  a volatility-managed buy-and-hold (Moreira & Muir 2017), the ablation's baseline sleeve.

A sleeve is 0 until its inputs exist (warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from bt_ibkr.errors import ConfigError

from .rolling import RollingMax, RollingMean, RollingMin, WilderRSI

__all__ = ["SLEEVES", "SleeveParams", "SleeveSignals", "Sleeves"]

SLEEVES = ("trend", "breakout", "meanrev", "rebound", "hold")


@dataclass(frozen=True)
class SleeveParams:
    """Numbers of the sleeves; the Strategy's params of the same names feed them."""

    sma_fast: int = 50
    breakout_entry: int = 55
    breakout_exit: int = 20
    rsi_period: int = 2
    rsi_entry: float = 10.0
    meanrev_exit_sma: int = 5
    meanrev_min_hold: int = 5
    rebound_stop_low: int = 10
    rebound_max_hold: int = 5

    def __post_init__(self):
        for name in (
            "sma_fast",
            "breakout_entry",
            "breakout_exit",
            "rsi_period",
            "meanrev_exit_sma",
            "meanrev_min_hold",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"sleeve param {name} must be an int >= 1, got {v!r}")
        for name in ("rebound_stop_low", "rebound_max_hold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(
                    f"sleeve param {name} must be an int >= 0 (0 = no stop), got {v!r}")
        if not 0.0 <= self.rsi_entry <= 100.0:
            raise ConfigError(f"sleeve param rsi_entry must be in [0, 100], got {self.rsi_entry!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Field names, i.e. the Strategy params that configure the sleeves."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: dict) -> SleeveParams:
        """Build from a mapping that may hold other keys too (e.g. all Strategy params)."""
        names = cls.names()
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class SleeveSignals:
    """One bar's sleeve signals, each 0.0 or 1.0."""

    trend: float
    breakout: float
    meanrev: float
    rebound: float
    hold: float


class Sleeves:
    """Incremental state of the sleeves for one feed.

    ``update(close, high, low, sma_long)`` returns ``(trend, breakout, meanrev, rebound, hold)``
    (the order of :data:`SLEEVES`) as floats in {0.0, 1.0}; ``sma_long`` is the long SMA after
    this bar (None during its warm-up). The latest values are also attributes of those names.
    ``active`` names the sleeves to compute (default: all); the others stay 0.0 and cost
    nothing (the Strategy leaves out sleeves no row of its table weighs). Raises
    :class:`ConfigError` for an unknown name in ``active``.
    """

    __slots__ = (
        "p",
        "_fast",
        "_exit_sma",
        "_hi",
        "_lo",
        "_rsi",
        "_closes",
        "_mr_held",
        "_rb_held",
        "_rb_stopped",
        "_on",
        "trend",
        "breakout",
        "meanrev",
        "rebound",
        "hold",
    )

    def __init__(self, params: SleeveParams | None = None, active=SLEEVES):
        p = params if params is not None else SleeveParams()
        self.p = p
        unknown = set(active) - set(SLEEVES)
        if unknown:
            raise ConfigError(f"Sleeves: unknown sleeve(s) {sorted(unknown)}; valid: {SLEEVES}")
        # (trend, breakout, meanrev, rebound, hold): which sleeves are computed; the others
        # keep 0.0 and their indicators are never fed (a sleeve no table row weighs)
        self._on = tuple(s in active for s in SLEEVES)
        self._fast = RollingMean(p.sma_fast)
        self._exit_sma = RollingMean(p.meanrev_exit_sma)
        self._hi = RollingMax(p.breakout_entry)
        self._lo = RollingMin(p.breakout_exit)
        self._rsi = WilderRSI(p.rsi_period)
        # lowest close of the previous rebound_stop_low bars (the rebound's price stop)
        self._closes = RollingMin(p.rebound_stop_low) if p.rebound_stop_low else None
        self._mr_held = 0
        self._rb_held = 0
        self._rb_stopped = False
        self.trend = 0.0
        self.breakout = 0.0
        self.meanrev = 0.0
        self.rebound = 0.0
        self.hold = 0.0

    def update(
        self, close: float, high: float, low: float, sma_long: float | None
    ) -> tuple[float, float, float, float, float]:
        """Feed one bar; return (trend, breakout, meanrev, rebound, hold) after it.

        Sleeves left out of ``active`` are not computed: they stay 0.0.
        """
        on_trend, on_breakout, on_meanrev, on_rebound, on_hold = self._on
        warm = sma_long is not None
        if on_breakout:
            # breakout: compare with the channel of the PREVIOUS bars, then add today's bar
            hi, lo = self._hi, self._lo
            if self.breakout == 0.0:
                if hi.full and close > hi.value:  # full channel, above its max
                    self.breakout = 1.0
            elif lo.full and close < lo.value:
                self.breakout = 0.0
            hi.update(high)
            lo.update(low)
        if on_trend:
            fast = self._fast.update(close)
            self.trend = 1.0 if (fast is not None and warm and fast > sma_long) else 0.0
        if on_hold:
            self.hold = 1.0 if warm else 0.0
        if on_meanrev or on_rebound:
            self._reversion(close, sma_long, warm, on_meanrev, on_rebound)
        return self.trend, self.breakout, self.meanrev, self.rebound, self.hold

    def _reversion(self, close: float, sma_long, warm: bool, on_meanrev: bool,
                   on_rebound: bool) -> None:
        """The meanrev and rebound sleeves (they share RSI(2) and the exit SMA)."""
        rsi = self._rsi.update(close)
        exit_sma = self._exit_sma.update(close)
        p = self.p
        oversold = rsi is not None and rsi < p.rsi_entry and warm
        exit_now = exit_sma is not None and close > exit_sma
        if not on_meanrev:
            pass
        elif self.meanrev == 1.0:
            self._mr_held += 1
            if exit_now and self._mr_held >= p.meanrev_min_hold:
                self.meanrev = 0.0
        elif oversold and close > sma_long:
            self.meanrev = 1.0
            self._mr_held = 0
        if not on_rebound:
            return
        lows = self._closes
        if self.rebound == 1.0:
            self._rb_held += 1
            stopped = (
                (lows is not None and lows.full and close < lows.value)
                or (p.rebound_max_hold and self._rb_held >= p.rebound_max_hold)
            )
            if exit_now or stopped:
                self.rebound = 0.0
                self._rb_stopped = bool(stopped) and not exit_now
        elif self._rb_stopped:
            self._rb_stopped = not exit_now  # re-armed by a close above SMA(5)
        elif oversold and close < sma_long:
            self.rebound = 1.0
            self._rb_held = 0
        if lows is not None:
            lows.update(close)

    def signals(self) -> SleeveSignals:
        """The latest signals as a :class:`SleeveSignals`."""
        return SleeveSignals(self.trend, self.breakout, self.meanrev, self.rebound, self.hold)
