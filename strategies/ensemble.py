"""RegimeAwareEnsemble: the one backtrader Strategy that runs in backtest, paper and live.

Per data feed, every bar, at the close (in ``next()``):

1. the regime classifier (:mod:`strategies.regime`) and the sleeves (:mod:`strategies.sleeves`)
   are advanced by one bar with their own O(1)/O(log n) state - no backtrader indicators, so a
   run with ``preload``/``runonce`` on and a run with them off (and live trading) compute the
   same floats in the same order;
2. blend = ``sum_s weights[regime][s] * signal_s`` (:mod:`strategies.allocation`; 0 in warm-up);
3. volatility targeting: blend * ``target_vol`` / realized vol(20d), at most ``max_leverage``,
   times (1 - ``cash_buffer``) and the regime's ``exposure`` (its risk scale: 0 in crisis, 1
   elsewhere by default);
4. the regime's cap is a CEILING on that final number: target = 1/N * min(cap, step 3), for N
   feeds (equal risk budget per symbol). So the target never exceeds ``cap * 1/N`` (tested on
   every bar);
5. with ``decision_delay`` = k > 0 the feed acts on the (regime, target) it computed k bars
   earlier (a test of how much the next-open fill relies on acting at once);
6. the feed is rebalanced with a market order (filled at the next open, backtrader's default)
   to an integer number of shares (of contracts for a future or an option: the broker's
   multiplier for the data) when the target is 0 and a position is open, or when
   |target - current weight| > ``band`` x target (``band_relative``, the default: a holding
   more than 15% off its target; a position is always opened and always closed) - with
   ``band_relative=False`` the band is absolute (|target - current| > ``band``, the previous
   rule). Sells are submitted before buys.

The default is the trend sleeve (SMA50 > SMA200), volatility-targeted, with the regime layer
as risk scaling: cash in crisis. Why that and not the previous sleeve switching:
docs/RESULTS.md (``python -m bench.evaluate_strategy``).

Ablation switches (params; ``python -m examples.backtest --param sleeves=trend``):

* ``sleeves``: ``"all"`` (default), a comma-separated string or a tuple of names from
  :attr:`RegimeAwareEnsemble.SLEEVES`. Each regime's row keeps only those sleeves, rescaled to
  the row's original sum; a row with none of them holds cash. An unknown name raises
  ConfigError (a ValueError) naming it and the valid ones.
* ``use_regimes``: False replaces the table by one static row (the average of the five rows,
  restricted to ``sleeves``, summing to 1) with no regime cap: regimes are still computed and
  reported but change nothing. ``sleeves="trend", use_regimes=False`` is the trend sleeve alone
  with the same volatility targeting; ``sleeves="hold", use_regimes=False`` a volatility-managed
  buy-and-hold.
* ``decision_delay``: see step 5.
* ``exposure``, ``crisis_immediate``, ``band_relative``, ``vol_rank_min``,
  ``meanrev_min_hold``, ``rebound_stop_low``/``rebound_max_hold``: each change of this design
  against the previous one can be switched off (``bench/evaluate_strategy.py`` ablation rows).

Warm-up (``"warmup"`` regime, 271 bars with the defaults): the strategy holds cash.
Live feeds (``data.islive()``): state is updated on every bar, including backfilled history,
but orders are only sent while the feed's last ``notify_data`` status is ``LIVE``; a bar with
an unusable close (<= 0, NaN) is skipped with a warning instead of stopping the session.
Commission and slippage are the broker's business (``cerebro.broker.setcommission``), not the
strategy's.

Attributes read by analyzers after every ``next()``: ``regime`` (primary feed, ``datas[0]``),
``regimes`` (data name -> regime), ``targets`` (data name -> target weight of portfolio value,
final: after vol targeting, cap, 1/N and the cash buffer), ``hmm_p_high`` (primary feed's
P(high-variance HMM state), None without ``use_hmm`` or before the first fit). With a
``decision_delay`` the regime and target are the ones being acted on. ``regimes``/``targets``
are replaced by new dicts on a bar that changes one of their values and never mutated: a dict
kept from an earlier bar keeps that bar's values. Data names are ``data._name`` (``data<i>``
when empty, ``name#<i>`` when two feeds share a name).

Per-bar cost: ``active_sleeves`` are the sleeves computed on each bar, those some row of the
resolved table weighs (the trend sleeve alone by default; all five when a subclass overrides
:meth:`decide`, which then sees every signal): a sleeve no row weighs cannot move a target.
The table is resolved once into per-regime (weights, cap, exposure x (1 - cash_buffer)) and
the decision queue is only used with a ``decision_delay``; the same floats result as from
the plain per-bar loop (tests/test_strategy_speed_identity.py compares them bar by bar).
"""

from __future__ import annotations

import logging
import math
from collections import deque

import backtrader as bt

from bt_ibkr.errors import ConfigError, DataError

from .allocation import (
    DEFAULT_CAPS,
    DEFAULT_EXPOSURE,
    DEFAULT_WEIGHTS,
    AllocationTable,
    resolve_table,
    weighted_sleeves,
)
from .regime import REGIMES, WARMUP, RegimeClassifier, RegimeParams, warmup_bars
from .sleeves import SLEEVES, SleeveParams, Sleeves

__all__ = [
    "DEFAULT_CAPS",
    "DEFAULT_EXPOSURE",
    "DEFAULT_WEIGHTS",
    "RegimeAwareEnsemble",
    "resolve_table",
]

log = logging.getLogger("bt_ibkr.strategy")

_IDLE = (WARMUP, 0.0)


def _number(what: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"{what} must be a finite number >= 0, got {v!r}")
    return float(v)


class _Feed:
    """Per-data-feed state: classifier, sleeves, decision queue, last bar seen, pending order."""

    __slots__ = (
        "data",
        "name",
        "clf",
        "sleeves",
        "queue",
        "seen",
        "pending",
        "tradable",
        "close",
        "high",
        "low",
        "unit",
    )

    def __init__(self, data, name: str, rp: RegimeParams, sp: SleeveParams, delay: int,
                 active: tuple[str, ...] = SLEEVES):
        self.data = data
        self.name = name
        self.clf = RegimeClassifier(rp)
        self.sleeves = Sleeves(sp, active)
        # (regime, target) of the last delay+1 bars; queue[0] is the one acted on once full
        self.queue: deque[tuple[str, float]] = deque(maxlen=delay + 1)
        #: value of one unit per point of price: the contract multiplier (ES 50, an option
        #: 100, a share 1), read from the broker on the first bar it trades
        self.unit = 0.0
        self.seen = 0
        self.pending = None
        # a live feed replays backfill bars first: trade only once it reports LIVE
        self.tradable = not data.islive()
        self.close = data.close
        self.high = data.high
        self.low = data.low


class RegimeAwareEnsemble(bt.Strategy):
    """Regime-aware ensemble of trend, breakout, mean-reversion, rebound and hold sleeves
    (DESIGN §8; by default the trend sleeve with cash in crisis).

    See the module docstring for the rules and :mod:`strategies.allocation` for the weight
    table. All numbers are params::

        cerebro.addstrategy(RegimeAwareEnsemble, band=0.05, use_hmm=True)

    Raises :class:`ConfigError` at construction for an invalid param (the message names it).
    """

    REGIMES = REGIMES
    SLEEVES = SLEEVES

    params = (
        # regime classifier (strategies.regime.RegimeParams)
        ("sma_long", 200),
        ("slope_lookback", 20),
        ("slope_threshold", 0.0),
        ("vol_window", 20),
        ("vol_rank_window", 252),
        ("vol_rank_min", None),  # None: the full window
        ("vol_high_enter", 0.80),
        ("vol_high_exit", 0.60),
        ("min_dwell", 5),
        ("crisis_immediate", True),
        ("annualization", 252.0),
        # HMM overlay (strategies.hmm.HMMOverlay): first fit once hmm_window returns exist
        ("use_hmm", False),
        ("hmm_window", 1260),
        ("hmm_refit_every", 21),
        ("hmm_promote_above", 0.8),
        ("hmm_release_below", 0.5),
        ("hmm_max_iter", 50),
        # sleeves (strategies.sleeves.SleeveParams)
        ("sma_fast", 50),
        ("breakout_entry", 55),
        ("breakout_exit", 20),
        ("rsi_period", 2),
        ("rsi_entry", 10.0),
        ("meanrev_exit_sma", 5),
        ("meanrev_min_hold", 5),
        ("rebound_stop_low", 10),
        ("rebound_max_hold", 5),
        # allocation (strategies.allocation)
        # dict regime -> {sleeve: weight} / regime -> cap / regime -> exposure; a partial dict
        # overrides only the entries it names (e.g. exposure={"bear_quiet": 0.5})
        ("weights", {r: dict(w) for r, w in DEFAULT_WEIGHTS.items()}),
        ("caps", dict(DEFAULT_CAPS)),
        ("exposure", dict(DEFAULT_EXPOSURE)),
        ("sleeves", "all"),
        ("use_regimes", True),
        ("decision_delay", 0),
        ("target_vol", 0.12),
        ("max_leverage", 1.0),
        ("band", 0.15),
        ("band_relative", True),
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
    @classmethod
    def warmup_bars(cls, params: dict | None = None) -> int:
        """Return how many bars pass before the first bar the strategy can act on, for
        ``params`` (defaults where missing): the regime warm-up plus ``decision_delay``."""
        merged = {**dict(cls.params._getitems()), **(params or {})}
        delay = merged.get("decision_delay", 0)
        return warmup_bars(RegimeParams.from_mapping(merged)) + (
            delay if isinstance(delay, int) and not isinstance(delay, bool) else 0)

    def __init__(self):
        p = self.p
        values = {k: getattr(p, k) for k in self.param_names()}
        rp = RegimeParams.from_mapping(values)
        sp = SleeveParams.from_mapping(values)
        self.table: AllocationTable = resolve_table(
            p.weights, p.caps, p.sleeves, p.use_regimes, p.exposure)
        self._rows = self.table.rows
        self._target_vol = _number("target_vol", p.target_vol)
        self._max_lev = _number("max_leverage", p.max_leverage)
        self._band = _number("band", p.band)
        if not isinstance(p.band_relative, bool):
            raise ConfigError(f"band_relative must be true or false, got {p.band_relative!r}")
        self._band_rel = p.band_relative
        self._buffer = _number("cash_buffer", p.cash_buffer)
        if self._buffer >= 1.0:
            raise ConfigError(f"cash_buffer must be < 1, got {p.cash_buffer!r}")
        delay = p.decision_delay
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ConfigError(f"decision_delay must be an int >= 0 (bars), got {delay!r}")
        if not self.datas:
            raise ConfigError("RegimeAwareEnsemble needs at least one data feed (cerebro.adddata)")
        # per regime: the (sleeve index, weight) pairs with a weight, its cap and the product
        # (1 - cash_buffer) * exposure, resolved once (decide() reads one tuple per bar)
        scale = 1.0 - self._buffer
        self._plan: dict[str, tuple[tuple[tuple[int, float], ...], float, float]] = {
            r: (tuple((i, w) for i, w in enumerate(weights) if w), cap, scale * exposure)
            for r, (weights, cap, exposure) in self._rows.items()
        }
        # a sleeve no row weighs cannot change a target: it is not computed (it reads 0.0),
        # unless a subclass overrides decide() and so may look at every signal
        if type(self).decide is RegimeAwareEnsemble.decide:
            active = weighted_sleeves(self.table)
        else:
            active = SLEEVES
        self.active_sleeves: tuple[str, ...] = active
        self._need_hl = "breakout" in active
        self._feeds: list[_Feed] = []
        used: set[str] = set()
        for i, d in enumerate(self.datas):
            name = d._name or f"data{i}"
            if name in used:  # two feeds with one name: keep both visible in regimes/targets
                name = f"{name}#{i}"
            used.add(name)
            self._feeds.append(_Feed(d, name, rp, sp, delay, active))
        self._by_data = {id(f.data): f for f in self._feeds}
        self._delay = delay
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

    def decide(self, f: _Feed, regime: str, signals: tuple[float, ...]) -> float:
        """Return the final target weight of feed ``f`` for ``regime`` and sleeve ``signals``.

        target = 1/N * min(cap, exposure * (1 - cash_buffer) * min(max_leverage, blend * tv / rv)),
        where blend is the regime row's weighted sum of the signals and exposure the regime's
        risk scale; 0 when the blend is 0. A subclass may override it (a hook called once per
        feed and bar, with all five signals computed).
        """
        terms, cap, scale = self._plan[regime]
        blend = 0.0
        for i, w in terms:
            s = signals[i]
            if s:
                blend += w * s
        if not blend > 0.0:
            return 0.0
        rv = f.clf.realized_vol
        lev = blend * self._target_vol / rv if rv else self._max_lev
        if lev > self._max_lev:
            lev = self._max_lev
        lev *= scale
        if lev > cap:
            lev = cap
        return lev * self._share

    def next(self):
        broker = self.broker
        value = broker.getvalue()
        regimes = self.regimes
        targets = self.targets
        fresh_r = fresh_t = False  # copy-on-write: a dict handed out is never mutated
        orders = None
        decide = self.decide
        hl = self._need_hl
        for f in self._feeds:
            # len(data) without its three nested calls: the close buffer's bar count
            cl = f.close
            n = cl.lencount
            if n == f.seen:
                continue  # no new bar on this feed (other calendars / prenext)
            f.seen = n
            close = cl.array[cl.idx]  # cl[0] without the method call
            try:
                fresh = f.clf.update(close)
            except DataError as exc:  # a bad bar must not kill a live session: skip it
                self.log("%s: bar skipped: %s", f.name, exc, level=logging.WARNING)
                continue
            if hl:  # only the breakout sleeve reads the high and the low
                signals = f.sleeves.update(close, f.high[0], f.low[0], f.clf.sma)
            else:
                signals = f.sleeves.update(close, close, close, f.clf.sma)
            target = decide(f, fresh, signals)
            if self._delay:
                q = f.queue
                q.append((fresh, target))
                regime, target = q[0] if len(q) == q.maxlen else _IDLE
            else:
                regime = fresh
            name = f.name
            if regimes[name] != regime:
                if not fresh_r:
                    self.regimes = regimes = dict(regimes)
                    fresh_r = True
                regimes[name] = regime
            if targets[name] != target:
                if not fresh_t:
                    self.targets = targets = dict(targets)
                    fresh_t = True
                targets[name] = target
            if f.pending is not None or not f.tradable or not value > 0.0:
                continue
            d = f.data
            unit = f.unit or self._unit_of(f)
            size = broker.getposition(d).size
            cur = size * close * unit / value
            band = self._band * target if self._band_rel else self._band
            if abs(target - cur) > band or (target == 0.0 and size != 0):
                # floor: whole shares (contracts), never over target
                want = int(target * value / (close * unit))
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

    def _unit_of(self, f: _Feed) -> float:
        """Return (and keep) the value of one unit of ``f`` per point of price: the broker's
        multiplier for its data (a future's or an option's; 1 for a share)."""
        mult = getattr(self.broker.getcommissioninfo(f.data).p, "mult", 1.0)
        f.unit = float(mult) if mult else 1.0
        return f.unit

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
