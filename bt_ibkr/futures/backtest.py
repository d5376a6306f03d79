"""Futures in backtrader backtests: one position unit is one contract of ``multiplier``.

Two ways, for two kinds of strategy:

- :func:`per_contract_frames` (what ``python -m examples.backtest --futures`` and
  :func:`bt_ibkr.backtest_run.simulate` use): the continuous series' prices are multiplied by the
  contract multiplier, so the feed quotes the notional of ONE contract (ES at 4,000 points
  reads 200,000). A strategy that sizes in units of price, as RegimeAwareEnsemble does
  (``int(target * value / close)``), then buys whole contracts, a position of ``k`` is
  ``k * multiplier * points`` of exposure, and commission (bps of traded value), slippage
  (bps of price), exposure and turnover need no change. Returns, and so every signal computed
  from returns or price ratios, are the same as on the points series.
- :func:`futures_comminfo`, a CommissionInfo with ``mult`` for strategies that size in
  contracts themselves from points prices (e.g. with :func:`bt_ibkr.futures.guard.
  contracts_for`); the position is carried at its full notional, see
  :class:`FuturesCommInfo`.

In both the position is fully collateralised (the cash set aside is the notional); the
exchange's real initial margin is lower, and margin calls are not modelled.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.futures.registry import FutureSpec, get_spec

__all__ = ["FuturesCommInfo", "continuous_built", "continuous_text", "futures_comminfo",
           "futures_text", "per_contract_frames"]


class FuturesCommInfo(bt.CommInfoBase):
    """A future carried at its notional, the multiplier in every value and commission.

    ``mult`` = the multiplier: a one-point move of one contract is ``mult`` of profit or loss;
    ``getsize`` gives whole contracts whose notional fits the cash, so
    ``order_target_percent(0.5)`` is half the equity in notional exposure; commission is a
    fraction of the traded notional (backtrader's own percentage commission leaves the
    multiplier out, charging 1/50th on ES). Why not backtrader's futures mode
    (``stocklike=False``, ``automargin=-1``): it settles the daily profit into cash AND values
    the position at the current price's margin, so every move counts twice.
    """

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
    )

    def _getcommission(self, size, price, pseudoexec):
        return abs(size) * price * self.p.mult * self.p.commission

    def getsize(self, price, cash):
        """Whole contracts whose notional fits ``cash``."""
        return int(self.p.leverage * (cash // (price * self.p.mult)))

    def getoperationcost(self, size, price):
        """Notional of ``size`` contracts at ``price``."""
        return abs(size) * price * self.p.mult

    def getvaluesize(self, size, price):
        """Signed notional of ``size`` contracts at ``price``."""
        return size * price * self.p.mult

    def getvalue(self, position, price):
        """Value of ``position`` at ``price`` (a short gains as the price falls)."""
        size = position.size
        if size >= 0:
            return size * price * self.p.mult
        return (position.price * size + (position.price - price) * size) * self.p.mult


def futures_comminfo(spec: FutureSpec, commission_bps: float) -> FuturesCommInfo:
    """Return the commission info of ``spec`` with ``commission_bps`` of notional per fill."""
    return FuturesCommInfo(mult=spec.multiplier, commission=commission_bps / 10_000.0)


def per_contract_frames(frames: dict[str, pd.DataFrame],
                        futures: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Return ``frames`` with each futures symbol's open/high/low/close multiplied by its
    root's multiplier (the notional of one contract); other symbols unchanged. ConfigError
    for an unknown root, or a futures symbol without a frame."""
    out = dict(frames)
    for symbol, root in futures.items():
        if symbol not in frames:
            raise ConfigError(f"--futures {symbol}: no bars loaded for it (symbols: "
                              f"{', '.join(frames)})")
        mult = get_spec(root).multiplier
        frame = frames[symbol].copy()
        frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]] * mult
        frame.attrs = dict(frames[symbol].attrs)
        out[symbol] = frame
    return out


def futures_text(futures: dict[str, str]) -> str:
    """One line describing the futures of a run, e.g. ``ES: E-mini S&P 500, x50 USD per point,
    CME, cash settled, carried at full notional``."""
    parts = []
    for symbol, root in futures.items():
        spec = get_spec(root)
        name = symbol if symbol == spec.root else f"{symbol} ({spec.root})"
        parts.append(f"{name}: {spec.description}, x{spec.multiplier:g} {spec.currency} per "
                     f"point, {spec.exchange}, {spec.settlement} settled")
    return "; ".join(parts) + (" (continuous series; one unit = one contract, priced at its "
                               "notional, fully collateralised)")


def continuous_built(frames: dict[str, pd.DataFrame],
                     futures: dict[str, str]) -> dict[str, dict]:
    """Return ``{symbol: description}`` of the futures symbols whose continuous series was
    built from IB's contracts (``frame.attrs["futures"]``, see
    :func:`bt_ibkr.data.futures_contracts.continuous_info`); others (a CSV) are left out."""
    return {s: dict(frames[s].attrs["futures"]) for s in futures
            if s in frames and isinstance(frames[s].attrs.get("futures"), dict)}


def continuous_text(built: dict[str, dict]) -> str:
    """One line naming, per symbol, the adjustment, the contracts and the roll dates, e.g.
    ``ES: ratio back-adjusted from ESH2..ESH4 (9 contracts), rolled on 2022-03-11, ...``."""
    parts = []
    for symbol, info in built.items():
        contracts, rolls = info["contracts"], info["rolls"]
        days = ", ".join(r["day"] for r in rolls) or "no roll"
        parts.append(f"{symbol}: {info['method']} back-adjusted from {contracts[0]}.."
                     f"{contracts[-1]} ({len(contracts)} contracts of IB), rolled on {days}")
    return "; ".join(parts)
