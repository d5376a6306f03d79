"""RegimeAwareEnsemble: the one backtrader Strategy that runs in backtest, paper and live.

Per data feed, every bar, at the close (in ``next()``):

1. the regime classifier (:mod:`strategies.regime`) and the sleeves (:mod:`strategies.sleeves`)
   are advanced by one bar with their own O(1)/O(log n) state - no backtrader indicators, so a
   run with ``preload``/``runonce`` on and a run with them off (and live trading) compute the
   same floats in the same order;
2. raw target = ``caps[regime] * sum_s weights[regime][s] * signal_s`` (0 in warm-up);
3. volatility targeting: raw * ``target_vol`` / realized vol(20d), capped at ``max_leverage``,
   times 1/N for N feeds (equal risk budget per symbol), times (1 - ``cash_buffer``);
4. the feed is rebalanced with a market order (filled at the next open, backtrader's default)
   to an integer number of shares only when |target - current weight| > ``band``, or when the
   target is 0 and a position is open. Sells are submitted before buys.

Default weight table (a priori, not fitted; ``weights``/``caps`` params override per regime):

    regime          trend  breakout  meanrev   cap
    bull_quiet       0.5     0.3      0.2     1.0
    bull_volatile    0.4     0.3      0.3     0.8
    range            0.2     0.2      0.6     0.6
    bear_quiet       0.5     0.3      0.2     0.4
    crisis           0.0     0.0      1.0     0.2

Warm-up (``"warmup"`` regime, ~220 bars with the defaults): the strategy holds cash.
Live feeds (``data.islive()``): state is updated on every bar, including backfilled history,
but orders are only sent while the feed's last ``notify_data`` status is ``LIVE``; a bar with
an unusable close (<= 0, NaN) is skipped with a warning instead of stopping the session.
Commission is the broker's business (``cerebro.broker.setcommission``), not the strategy's.

Attributes read by analyzers after every ``next()``: ``regime`` (primary feed, ``datas[0]``),
``regimes`` (data name -> regime), ``targets`` (data name -> target weight of portfolio value,
after vol targeting, 1/N and the cash buffer), ``hmm_p_high`` (primary feed's P(high-variance
HMM state), None without ``use_hmm`` or before the first fit). ``regimes``/``targets`` are new
dicts every bar (never mutated afterwards). Data names are ``data._name`` (``data<i>`` when
empty, ``name#<i>`` when two feeds share a name).
"""

from __future__ import annotations

import logging
import math

import backtrader as bt

from bt_ibkr.errors import ConfigError, DataError

from .regime import REGIMES, WARMUP, RegimeClassifier, RegimeParams
from .sleeves import SLEEVES, SleeveParams, Sleeves

__all__ = ["DEFAULT_CAPS", "DEFAULT_WEIGHTS", "RegimeAwareEnsemble", "resolve_table"]

log = logging.getLogger("bt_ibkr.strategy")

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "bull_quiet": {"trend": 0.5, "breakout": 0.3, "meanrev": 0.2},
    "bull_volatile": {"trend": 0.4, "breakout": 0.3, "meanrev": 0.3},
    "range": {"trend": 0.2, "breakout": 0.2, "meanrev": 0.6},
    "bear_quiet": {"trend": 0.5, "breakout": 0.3, "meanrev": 0.2},
    "crisis": {"trend": 0.0, "breakout": 0.0, "meanrev": 1.0},
}
DEFAULT_CAPS: dict[str, float] = {
    "bull_quiet": 1.0,
    "bull_volatile": 0.8,
    "range": 0.6,
    "bear_quiet": 0.4,
    "crisis": 0.2,
}


def _number(what: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {v!r}")
    return float(v)


def resolve_table(
    weights: dict | None, caps: dict | None
) -> dict[str, tuple[float, float, float, float]]:
    """Merge user overrides into the default tables.

    ``weights`` maps regime -> {sleeve: weight} (sleeves: trend, breakout, meanrev; missing
    sleeves keep their default), ``caps`` maps regime -> gross cap. Returns
    regime -> (cap * w_trend, cap * w_breakout, cap * w_meanrev, cap), plus ``"warmup"`` -> all 0.
    Raises :class:`ConfigError` naming an unknown regime or sleeve, or a negative/non-numeric
    value.
    """
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
    table = {
        r: (
            c[r] * w[r]["trend"],
            c[r] * w[r]["breakout"],
            c[r] * w[r]["meanrev"],
            c[r],
        )
        for r in REGIMES
    }
    table[WARMUP] = (0.0, 0.0, 0.0, 0.0)
    return table


class _Feed:
    """Per-data-feed state: classifier, sleeves, last bar seen, pending order."""

    __slots__ = (
        "data",
        "name",
        "clf",
        "sleeves",
        "seen",
        "pending",
        "tradable",
        "close",
        "high",
        "low",
    )

    def __init__(self, data, name: str, rp: RegimeParams, sp: SleeveParams):
        self.data = data
        self.name = name
        self.clf = RegimeClassifier(rp)
        self.sleeves = Sleeves(sp)
        self.seen = 0
        self.pending = None
        # a live feed replays backfill bars first: trade only once it reports LIVE
        self.tradable = not data.islive()
        self.close = data.close
        self.high = data.high
        self.low = data.low


class RegimeAwareEnsemble(bt.Strategy):
    """Regime-aware ensemble of trend, breakout and mean-reversion sleeves (DESIGN §8).

    See the module docstring for the rules. All numbers are params::

        cerebro.addstrategy(RegimeAwareEnsemble, band=0.05, use_hmm=True)

    Raises :class:`ConfigError` at construction for an invalid param (the message names it).
    """

    REGIMES = REGIMES

    params = (
        # regime classifier (strategies.regime.RegimeParams)
        ("sma_long", 200),
        ("slope_lookback", 20),
        ("slope_threshold", 0.002),
        ("vol_window", 20),
        ("vol_rank_window", 504),
        ("vol_rank_min", 60),
        ("vol_high_enter", 0.80),
        ("vol_high_exit", 0.60),
        ("min_dwell", 5),
        ("crisis_below_sma", True),
        ("annualization", 252.0),
        # HMM overlay (strategies.hmm.HMMOverlay)
        ("use_hmm", False),
        ("hmm_window", 1260),
        ("hmm_refit_every", 21),
        ("hmm_min_history", 252),
        ("hmm_promote_above", 0.8),
        ("hmm_max_iter", 50),
        # sleeves (strategies.sleeves.SleeveParams)
        ("sma_fast", 50),
        ("breakout_entry", 55),
        ("breakout_exit", 20),
        ("rsi_period", 2),
        ("rsi_entry", 10.0),
        ("meanrev_exit_sma", 5),
        # allocation
        # dict regime -> {sleeve: weight} / regime -> gross cap; a partial dict overrides
        # only the entries it names (e.g. weights={"crisis": {"meanrev": 0.0}})
        ("weights", {r: dict(w) for r, w in DEFAULT_WEIGHTS.items()}),
        ("caps", dict(DEFAULT_CAPS)),
        ("target_vol", 0.12),
        ("max_leverage", 1.0),
        ("band", 0.10),
        ("cash_buffer", 0.02),
    )

    @classmethod
    def param_defaults(cls) -> dict:
        """Mapping param name -> default value (defaults carry the expected type)."""
        return dict(cls.params._getitems())

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of all params, in declaration order (for CLI ``--param key=value``)."""
        return tuple(cls.params._getkeys())

    # --------------------------------------------------------------------------------------
    def __init__(self):
        p = self.p
        values = {k: getattr(p, k) for k in self.param_names()}
        rp = RegimeParams.from_mapping(values)
        sp = SleeveParams.from_mapping(values)
        self._table = resolve_table(p.weights, p.caps)
        self._target_vol = _number("target_vol", p.target_vol)
        self._max_lev = _number("max_leverage", p.max_leverage)
        self._band = _number("band", p.band)
        self._buffer = _number("cash_buffer", p.cash_buffer)
        if self._buffer >= 1.0:
            raise ConfigError(f"cash_buffer must be < 1, got {p.cash_buffer!r}")
        if not self.datas:
            raise ConfigError("RegimeAwareEnsemble needs at least one data feed (cerebro.adddata)")
        self._feeds: list[_Feed] = []
        used: set[str] = set()
        for i, d in enumerate(self.datas):
            name = d._name or f"data{i}"
            if name in used:  # two feeds with one name: keep both visible in regimes/targets
                name = f"{name}#{i}"
            used.add(name)
            self._feeds.append(_Feed(d, name, rp, sp))
        self._by_data = {id(f.data): f for f in self._feeds}
        self._share = 1.0 / len(self._feeds)
        self.regime: str = WARMUP
        self.regimes: dict[str, str] = {f.name: WARMUP for f in self._feeds}
        self.targets: dict[str, float] = {f.name: 0.0 for f in self._feeds}
        self.hmm_p_high: float | None = None

    # --------------------------------------------------------------------------------------
    def log(self, msg: str, *args, level: int = logging.INFO) -> None:
        """Log ``msg % args`` on logger ``bt_ibkr.strategy``, prefixed with the bar's date."""
        if log.isEnabledFor(level):
            try:
                dt = self.datas[0].datetime.datetime(0).isoformat()
            except (IndexError, ValueError):
                dt = "-"
            log.log(level, "%s " + msg, dt, *args)

    def prenext(self):
        # feeds that start later than others: advance the ones that already have bars
        self.next()

    def next(self):
        broker = self.broker
        value = broker.getvalue()
        table = self._table
        tv = self._target_vol
        max_lev = self._max_lev
        scale_out = self._share * (1.0 - self._buffer)
        # fresh dicts every bar: an analyzer may keep last bar's dict without copying it
        self.regimes = regimes = dict(self.regimes)
        self.targets = targets = dict(self.targets)
        orders = None
        for f in self._feeds:
            # len(data) without its three nested calls: the close buffer's bar count
            n = f.close.lencount
            if n == f.seen:
                continue  # no new bar on this feed (other calendars / prenext)
            f.seen = n
            close = f.close[0]
            clf = f.clf
            try:
                regime = clf.update(close)
            except DataError as exc:  # a bad bar must not kill a live session: skip it
                self.log("%s: bar skipped: %s", f.name, exc, level=logging.WARNING)
                continue
            trend, breakout, meanrev = f.sleeves.update(close, f.high[0], f.low[0], clf.sma)
            wt, wb, wm, _cap = table[regime]
            raw = wt * trend + wb * breakout + wm * meanrev
            if raw > 0.0:
                rv = clf.realized_vol
                lev = raw * tv / rv if rv else max_lev
                if lev > max_lev:
                    lev = max_lev
                target = lev * scale_out
            else:
                target = 0.0
            regimes[f.name] = regime
            targets[f.name] = target
            if f.pending is not None or not f.tradable or not value > 0.0:
                continue
            d = f.data
            size = broker.getposition(d).size
            cur = size * close / value
            if abs(target - cur) > self._band or (target == 0.0 and size != 0):
                want = int(target * value / close)  # floor: integer shares, never over target
                delta = want - size
                if delta:
                    if orders is None:
                        orders = []
                    orders.append((delta, f))
        f0 = self._feeds[0]
        self.regime = regimes[f0.name]
        self.hmm_p_high = f0.clf.p_high
        if orders:
            orders.sort(key=lambda o: o[0] > 0)  # sells (negative deltas) first, stable
            for delta, f in orders:
                if delta < 0:
                    f.pending = self.sell(data=f.data, size=-delta)
                else:
                    f.pending = self.buy(data=f.data, size=delta)

    # --------------------------------------------------------------------------------------
    def notify_data(self, data, status, *args, **kwargs):
        f = self._by_data.get(id(data))
        if f is None or not data.islive():
            return
        f.tradable = status == data.LIVE
        self.log("%s: data status %s", f.name, data._getstatusname(status), level=logging.INFO)

    def notify_order(self, order):
        status = order.status
        if status in (order.Submitted, order.Accepted, order.Partial):
            return
        f = self._by_data.get(id(order.data))
        if f is not None and f.pending is not None and f.pending.ref == order.ref:
            f.pending = None
        name = f.name if f is not None else getattr(order.data, "_name", "?")
        side = "BUY" if order.isbuy() else "SELL"
        if status == order.Completed:
            self.log(
                "%s %s %d @ %.4f filled (commission %.2f)",
                side,
                name,
                abs(order.executed.size),
                order.executed.price,
                order.executed.comm,
                level=logging.DEBUG,
            )
        elif status == order.Margin:
            self.log(
                "%s %s %d rejected by the broker for insufficient cash/margin (ref %s); "
                "raise cash_buffer or lower max_leverage",
                side,
                name,
                abs(order.created.size),
                order.ref,
                level=logging.WARNING,
            )
        elif status == order.Rejected:
            self.log(
                "%s %s %d rejected by the broker (ref %s)",
                side,
                name,
                abs(order.created.size),
                order.ref,
                level=logging.WARNING,
            )
        else:  # Canceled / Expired
            self.log(
                "%s %s %d %s (ref %s)",
                side,
                name,
                abs(order.created.size),
                order.getstatusname().lower(),
                order.ref,
                level=logging.INFO,
            )
