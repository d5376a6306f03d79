"""Position changes no order of ours made: an option's expiry, exercise or assignment.

IB settles an expiring option overnight without an order: the option's position goes to 0 and,
when it was exercised or assigned into stock, the underlying's position moves by
``contracts x multiplier`` shares at the strike. Through the API the client is told only by
position (and portfolio/account) updates, without ``execDetails`` (see
:mod:`bt_ibkr.gateway_sim.option_expiry` for the sources). A broker that counts only fills
would keep the expired option and miss the delivered shares for the rest of the run.

Two parts, one per thread:

* :class:`PositionWatch` (the store's loop thread, attached to the client like
  :class:`~bt_ibkr.ib.book.FillBook`) keeps, per account and contract, the last position IB
  reported and the executions received since. A report that those executions do not explain is
  a change no order of this client made. For an option it asks the gateway's clock (expired or
  not) and pairs it with the underlying stock's unexplained change of exactly the delivery an
  exercise or assignment makes (whichever is reported first); it puts one
  :class:`PositionSettlement` on the broker's queue:

  - ``how="expired"``: the option's expiry (16:00 New York on its date) has passed and no
    delivery was seen: it lapsed (or, for an index option, was cash-settled: IB's cash credit
    then reaches the ledger only when it adopts IB's cash, :meth:`IBBroker.reconcile`);
  - ``how="exercised"`` (a long option) / ``"assigned"`` (a short one): the option left and
    the underlying moved by the delivery; ``early`` when the expiry has not passed (an
    American option exercised or assigned early). A delivery reported after the option's
    "expired" settlement is put as its own settlement (``contracts == 0``); one stock report
    for several options is split among the ones one underlying close puts in the money
    (:func:`itm_legs`);
  - an unexplained change of an option that has not expired and has no delivery (a trade made
    elsewhere, e.g. in TWS) is not a settlement: it is logged and left alone. A fill of ours
    whose position IB reports before its execution is unexplained only until the execution
    comes, and is then dropped.

  After a reconnect, a position the watch knew that IB no longer reports is a report of 0.
* :class:`SettlementFollower` (backtrader's thread, owned by the broker) books a settlement in
  the broker's ledger as what it is: the option's position to 0 at price 0 and the delivered
  shares at the strike (the cash paid or received), with no commission and no order
  notification (no phantom fill), then tells the Strategy through ``notify_store`` (kind
  ``"expiry"``). The broker's subscribers (the journal) get the :class:`PositionSettlement`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from bt_ibkr.ib.parsing import contract_symbol

__all__ = ["OPTION_TYPES", "PositionSettlement", "PositionWatch", "SettlementFollower",
           "expiry_close", "itm_legs"]

log = logging.getLogger("bt_ibkr.ib.position_events")

OPTION_TYPES = ("OPT", "FOP")
"""The secTypes the watch treats as options."""

_EPS = 1e-9
_NEW_YORK = ZoneInfo("America/New_York")


def expiry_close(contract: Any) -> datetime | None:
    """Return 16:00 New York on ``contract``'s expiry date (its lastTradeDateOrContractMonth,
    YYYYMMDD) as an aware datetime; None when the contract carries no full date."""
    text = str(getattr(contract, "lastTradeDateOrContractMonth", "") or "")[:8]
    try:
        day = datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
    return datetime.combine(day, time(16, 0), _NEW_YORK)


def _multiplier(contract: Any) -> float:
    try:
        return float(getattr(contract, "multiplier", "") or 100.0)
    except ValueError:
        return 100.0


@dataclass(frozen=True)
class PositionSettlement:
    """One option settlement IB made without an order (see the module docstring).

    ``option``: the option's IB contract; ``contracts``: the option position that left
    (signed as it was held: +2 long, -3 short; 0 when only a late delivery is reported);
    ``how``: "expired", "exercised" or "assigned"; ``underlying``: the stock contract the
    delivery moved (None: none); ``delivered``: signed shares booked at ``strike``;
    ``early``: before the option's expiry (an early exercise or assignment); ``time``: the
    gateway's clock when the watch judged it."""

    account: str
    option: Any = field(compare=False, repr=False)
    contracts: float
    how: str
    underlying: Any = field(default=None, compare=False, repr=False)
    delivered: float = 0.0
    strike: float = 0.0
    early: bool = False
    time: datetime | None = None

    @property
    def option_symbol(self) -> str:
        """The option's symbol as bt_ibkr files it (its OCC local symbol)."""
        return contract_symbol(self.option)

    @property
    def underlying_symbol(self) -> str:
        """The delivered stock's symbol ("" when nothing was delivered)."""
        return contract_symbol(self.underlying) if self.underlying is not None else ""

    def describe(self) -> str:
        """Return the one line ``notify_store`` and the logs show."""
        what = {"expired": "expired without delivery (lapsed, or cash-settled)",
                "exercised": "exercised", "assigned": "assigned"}[self.how]
        head = (f"option {self.option_symbol}: {self.contracts:+g} contract(s) {what}"
                + (" before its expiry" if self.early else "")) if self.contracts else (
                f"option {self.option_symbol} {what}")
        if self.delivered:
            head += (f"; {self.underlying_symbol} {self.delivered:+g} shares at the strike "
                     f"{self.strike:g}")
        return head + " (no order; no commission)"


@dataclass(eq=False)
class _Pending:
    """An unexplained option change waiting for its delivery (or judged expired)."""

    account: str
    option: Any
    contracts: float  # the position that left (signed as held)
    delivery: float  # the shares an exercise/assignment of it delivers
    judged: bool = False  # the gateway's clock was read
    expired: bool = False
    emitted: bool = False  # an "expired" settlement was put already
    now: datetime | None = None

    @property
    def stock_key(self) -> tuple[str, str, str]:
        return self.account, self.option.symbol, getattr(self.option, "currency", "")


class PositionWatch:
    """Finds position changes no execution explains (loop thread; see the module docstring).

    ``put(settlement)`` receives each :class:`PositionSettlement`; ``clock()`` is a coroutine
    returning the gateway's time (aware); ``account``: the one account to watch ("" = all).
    """

    def __init__(self, put: Callable[[PositionSettlement], None],
                 clock: Callable[[], Awaitable[datetime]], account: str = "") -> None:
        self.put = put
        self.clock = clock
        self.account = account
        self._size: dict[tuple[str, int], float] = {}
        self._contracts: dict[tuple[str, int], Any] = {}
        self._execs: dict[tuple[str, int], float] = {}  # received since the last report
        self._ahead: dict[tuple[str, int], float] = {}  # reported before its execution
        #: (account, symbol, currency) -> unexplained stock changes [(contract, shares)]
        self._stock: dict[tuple[str, str, str], list[tuple[Any, float]]] = {}
        self._pending: list[_Pending] = []
        self._tasks: set[asyncio.Future] = set()
        self._asking: asyncio.Future | None = None  # the clock request in flight
        self._synced = False  # a connect's positions were read: later reports are changes

    def attach(self, ib: Any) -> None:
        """Follow a client object's executions and positions (a connection hook)."""
        ib.execDetailsEvent += self.on_exec
        ib.positionEvent += self.on_position

    def _mine(self, account: str) -> bool:
        return not self.account or not account or account == self.account

    # ------------------------------------------------------------------ client events (loop)
    def on_exec(self, trade: Any, fill: Any) -> None:
        """An execution of this client (``execDetailsEvent``): it explains a position change."""
        ex = fill.execution
        if not self._mine(getattr(ex, "acctNumber", "")):
            return
        key = (getattr(ex, "acctNumber", "") or "", fill.contract.conId)
        shares = float(ex.shares) if ex.side in ("BOT", "BUY") else -float(ex.shares)
        ahead = self._ahead.get(key, 0.0)
        if ahead * shares > 0 and abs(ahead) >= abs(shares) - _EPS:
            self._ahead[key] = ahead - shares  # its position was reported before it
            skey = (key[0], fill.contract.symbol, getattr(fill.contract, "currency", ""))
            deltas = self._stock.get(skey, [])
            for k, (contract, delta) in enumerate(deltas):
                if contract.conId == key[1] and abs(delta - shares) <= _EPS:
                    del deltas[k]  # that change was this fill, not a delivery
                    break
            for p in self._pending:
                if (not p.emitted and (p.account, p.option.conId) == key
                        and abs(p.contracts + shares) <= _EPS):
                    self._pending.remove(p)  # an option fill of ours, not a settlement
                    break
            return
        self._execs[key] = self._execs.get(key, 0.0) + shares

    def on_position(self, pos: Any) -> None:
        """A position report (``positionEvent``)."""
        if not self._mine(getattr(pos, "account", "")):
            return
        self._report(pos.account or "", pos.contract, float(pos.position))

    def resync(self, positions: Iterable[Any]) -> None:
        """After a (re)connect, ``positions`` is every position IB holds now: one the watch
        knew as non-zero that is not among them is flat (a report of 0)."""
        positions = [p for p in positions if self._mine(getattr(p, "account", ""))]
        reported = {(p.account or "", p.contract.conId) for p in positions}
        for p in positions:  # a position first met here is the base
            self._size.setdefault((p.account or "", p.contract.conId), float(p.position))
            self._contracts.setdefault((p.account or "", p.contract.conId), p.contract)
        self._synced = True
        for key, size in list(self._size.items()):
            if abs(size) > _EPS and key not in reported:
                self._report(key[0], self._contracts[key], 0.0)

    def _report(self, account: str, contract: Any, size: float) -> None:
        key = (account, contract.conId)
        self._contracts[key] = contract
        if key not in self._size and not self._synced:  # before the first sync: the base
            self._size[key] = size
            self._execs.pop(key, None)
            return
        self._size.setdefault(key, 0.0)  # after it, a contract never reported was flat
        expected = self._size[key] + self._execs.pop(key, 0.0)
        self._size[key] = size
        change = size - expected
        if abs(change) <= _EPS:
            return
        self._ahead[key] = self._ahead.get(key, 0.0) + change
        sec = getattr(contract, "secType", "")
        if sec in OPTION_TYPES:
            self._on_option(account, contract, change)
        elif sec == "STK":
            self._on_stock(account, contract, change)

    def _on_option(self, account: str, contract: Any, change: float) -> None:
        right = 1.0 if str(getattr(contract, "right", "")).upper().startswith("C") else -1.0
        contracts = -change  # what left, signed as held
        p = _Pending(account, contract, contracts, contracts * _multiplier(contract) * right)
        self._pending.append(p)
        task = asyncio.ensure_future(self._judge(p))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, p: _Pending) -> None:
        """Read the gateway's clock, then settle ``p`` with a delivery seen so far, or as
        expired, or leave it waiting (not expired: an early assignment's delivery may come)."""
        try:
            if self._asking is None or self._asking.done():  # one request for them all
                self._asking = asyncio.ensure_future(self.clock())
            now = await asyncio.shield(self._asking)
        except Exception:  # noqa: BLE001 - the clock falls back itself; never lose the change
            log.debug("gateway clock unavailable for an option change", exc_info=True)
            now = None
        if p not in self._pending:
            return  # its execution came: a fill, not a settlement
        close = expiry_close(p.option)
        p.judged, p.now = True, now
        p.expired = bool(now is not None and close is not None and now >= close)
        deltas = self._stock.get(p.stock_key, [])
        for k, (stock, delta) in enumerate(deltas):
            if abs(delta - p.delivery) <= _EPS:
                del deltas[k]
                self._deliver(p, stock, delta)
                return
        if p.expired:
            p.emitted = True
            self._explained(p.account, p.option, -p.contracts)
            self.put(PositionSettlement(p.account, p.option, p.contracts, "expired",
                                        strike=float(p.option.strike), time=now))
            self._match_together(p.stock_key)
        else:
            log.warning("option %s: position changed by %+g without an execution this client "
                        "received, before its expiry and (so far) without its underlying's "
                        "delivery: a trade made elsewhere? followed only if an early "
                        "exercise/assignment's delivery comes", contract_symbol(p.option),
                        -p.contracts)

    def _on_stock(self, account: str, contract: Any, change: float) -> None:
        skey = (account, contract.symbol, getattr(contract, "currency", ""))
        for p in self._pending:
            if p.judged and p.stock_key == skey and abs(p.delivery - change) <= _EPS:
                self._deliver(p, contract, change)
                return
        self._stock.setdefault(skey, []).append((contract, change))
        self._match_together(skey)

    def _match_together(self, skey: tuple[str, str, str]) -> None:
        """IB may report the stock once for several options delivered together: when the
        stock's unexplained changes add up to the deliveries of every expired option of it
        still waiting, they are those deliveries."""
        deltas = self._stock.get(skey, [])
        waiting = [p for p in self._pending if p.stock_key == skey and p.emitted]
        if len(waiting) < 2 or not deltas:
            return
        pick = itm_legs([(str(p.option.lastTradeDateOrContractMonth), float(p.option.strike),
                          str(p.option.right)[:1].upper(), p.delivery) for p in waiting],
                        sum(d for _, d in deltas))
        if len(pick) < 2:
            return
        stock = deltas[-1][0]
        self._stock[skey] = []
        for k in sorted(pick):
            self._deliver(waiting[k], stock, waiting[k].delivery)

    def _explained(self, account: str, contract: Any, change: float) -> None:
        """A settlement accounts for ``change`` of ``contract``: no execution will."""
        key = (account, contract.conId)
        self._ahead[key] = self._ahead.get(key, 0.0) - change

    def _deliver(self, p: _Pending, stock: Any, delivered: float) -> None:
        """Put the settlement of ``p`` with its delivery (a late one when ``p`` was put as
        expired already)."""
        self._pending.remove(p)
        if not p.emitted:
            self._explained(p.account, p.option, -p.contracts)
        self._explained(p.account, stock, delivered)
        self.put(PositionSettlement(
            p.account, p.option, 0.0 if p.emitted else p.contracts,
            "exercised" if p.contracts > 0 else "assigned", underlying=stock,
            delivered=delivered, strike=float(p.option.strike),
            early=not p.expired, time=p.now))


def itm_legs(legs: list[tuple[str, float, str, float]], total: float) -> set[int]:
    """Return which of ``legs`` (expiry, strike, right "C"/"P", delivery) were in the money
    when their deliveries add up to ``total``: the one set that some underlying close per
    expiry puts in the money (calls struck below it, puts above it). Empty when no set, or
    more than one, fits (ambiguous: nothing is claimed)."""
    groups: dict[str, list[int]] = {}
    for k, leg in enumerate(legs):
        groups.setdefault(leg[0], []).append(k)
    choices: list[list[frozenset[int]]] = []
    for idx in groups.values():
        strikes = sorted({legs[k][1] for k in idx})
        closes = [strikes[0] - 1.0, strikes[-1] + 1.0] + [x + d for x in strikes
                                                          for d in (-1e-4, 0.0, 1e-4)]
        choices.append(list({frozenset(
            k for k in idx if (legs[k][2] == "C" and legs[k][1] < close)
            or (legs[k][2] == "P" and legs[k][1] > close)) for close in closes}))
    fits: set[frozenset[int]] = set()
    for combo in itertools.islice(itertools.product(*choices), 10_000):
        pick = frozenset().union(*combo)
        if pick and abs(sum(legs[k][3] for k in pick) - total) <= 1e-6:
            fits.add(pick)
    return set(next(iter(fits))) if len(fits) == 1 else set()


class SettlementFollower:
    """Books :class:`PositionSettlement` events in a broker's ledger (backtrader's thread).

    ``broker`` provides ``book_position_change(contract, size, price)`` and ``store``
    (``notify_event``)."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.settlements: list[PositionSettlement] = []

    def on_event(self, event: Any) -> None:
        """A broker subscriber: apply each :class:`PositionSettlement`, ignore the rest."""
        if isinstance(event, PositionSettlement):
            self.apply(event)

    def apply(self, ev: PositionSettlement) -> None:
        """Book ``ev`` (the option out at 0, the delivery at the strike) and tell
        ``notify_store`` (kind "expiry")."""
        if ev.contracts:
            self.broker.book_position_change(ev.option, -ev.contracts, 0.0)
        position = None
        if ev.delivered and ev.underlying is not None:
            position = self.broker.book_position_change(ev.underlying, ev.delivered, ev.strike)
        self.settlements.append(ev)
        text = ev.describe()
        if position is not None:
            text += f"; position now {position.size:g}"
        log.info("%s", text)
        self.broker.store.notify_event(
            text, kind="expiry", symbol=ev.option_symbol, how=ev.how, contracts=ev.contracts,
            underlying=ev.underlying_symbol, delivered=ev.delivered, strike=ev.strike,
            early=ev.early)
