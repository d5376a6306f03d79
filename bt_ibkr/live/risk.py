"""Pre-trade risk limits: every order passes :meth:`RiskGate.check` before it is journaled or sent.

Rules, in the order they are checked:

1. Sanity: side BUY/SELL, quantity > 0, price a finite number > 0.
2. Orders that only *reduce* a position (toward zero, never through it) are always allowed, so
   the rails can never trap you in a position.
3. Daily loss: when equity is below ``day_start_equity * (1 - max_daily_loss)`` the gate halts:
   every new order that adds exposure is refused until :meth:`RiskGate.new_day`. The first
   refusal carries ``newly_halted=True`` (and is logged once) so the runner can say so loudly.
4. ``max_order_notional``: quantity x price x multiplier of one order.
5. ``max_position_per_symbol``: absolute shares (contracts) after the order.
6. ``max_position_notional``: absolute shares after the order x price x multiplier.
7. ``max_margin_fraction``: the order's initial margin, as IB's what-if answers it (the
   ``what_if`` callable), at most this fraction of the equity (net liquidation; the value the
   strategy sizes from under ``risk.capital``). Checked last, on the quantity the size limits
   left, for any kind of order. When IB gives no margin the order's notional stands for it (the
   backtest's fully collateralised rule), logged once per symbol.

Notionals count the contract multiplier (one ES contract at 4,000 is 200,000).

"After the order" counts what is already committed: the position held, plus ``pending`` (the
signed shares of working orders and of intents journaled but not yet acknowledged), plus this
order: of three buys of 100 in one bar under a limit of 150, the first passes (0 -> 100) and
the second is refused (100 working -> 200).

Reasons are written for the person reading the log, e.g.
``order 500 SPY @ 450.00 = 225,000.00 exceeds max_order_notional 100,000.00`` or
``BUY 3 ES refused: initial margin 150,000.00 (IB's what-if) exceeds max_margin_fraction 10.00%
of equity 1,000,000.00 = 100,000.00``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from bt_ibkr.live.config import RiskConfig
from bt_ibkr.live.sizing import units_within

WhatIf = Callable[[float], "float | None"]
"""``what_if(quantity)``: IB's initial margin change for the order at ``quantity`` (None: IB
gave none)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RiskLimits:
    """The limits a :class:`RiskGate` enforces; ``None`` = no limit."""

    max_position_per_symbol: float | None = None
    max_position_notional: float | None = None
    max_order_notional: float | None = None
    max_daily_loss: float | None = None
    max_margin_fraction: float | None = None
    shrink: frozenset = frozenset()  # the limits that shrink an order to fit (else: refuse)

    @classmethod
    def from_config(cls, risk: RiskConfig) -> RiskLimits:
        """Return the limits of a :class:`~bt_ibkr.live.config.RiskConfig`."""
        return cls(
            max_position_per_symbol=risk.max_position_per_symbol,
            max_position_notional=risk.max_position_notional,
            max_order_notional=risk.max_order_notional,
            max_daily_loss=risk.max_daily_loss,
            max_margin_fraction=risk.max_margin_fraction,
            shrink=frozenset(getattr(risk, "shrink", ()) or ()),
        )


@dataclass(frozen=True)
class RiskDecision:
    """The answer of :meth:`RiskGate.check`.

    ``allowed``: send it or not. ``reason``: why not (or ``"ok"`` / why a reducing order passed).
    ``halted``: the daily-loss halt is in force. ``newly_halted``: this check triggered the halt
    (True exactly once per day), so the runner should announce it. ``quantity``: when a limit
    in ``RiskLimits.shrink`` shrank the order, the whole quantity that fits (``reason`` says
    from what, to what, and why).
    """

    allowed: bool
    reason: str
    halted: bool = False
    newly_halted: bool = False
    quantity: float | None = None  # set when a limit shrank the order: the size to send

    def __bool__(self) -> bool:
        return self.allowed


def _money(x: float | None) -> str:
    return "none" if x is None else f"{x:,.2f}"


def _qty(x: float | None) -> str:
    if x is None:
        return "none"
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.4g}"


def _committed(held: float, pending: float) -> str:
    return f" (held {_qty(held)}, in working orders {_qty(pending)})" if pending else ""


class RiskGate:
    """Checks orders against :class:`RiskLimits` and keeps the daily-loss halt state.

    Call :meth:`new_day` with the equity at the start of each trading day (the runner does it at
    start-up and when the session date changes).
    """

    def __init__(self, limits: RiskLimits | RiskConfig, day_start_equity: float | None = None):
        self.limits = limits if isinstance(limits, RiskLimits) else RiskLimits.from_config(limits)
        self.day_start_equity = day_start_equity
        self.halted = False
        self.halt_reason = ""
        self._no_margin: set[str] = set()  # symbols IB gave no what-if margin for (logged)

    def new_day(self, equity: float) -> None:
        """Start a new trading day: remember its starting equity and lift the daily-loss halt."""
        if equity is None or not math.isfinite(equity) or equity <= 0:
            raise ValueError(f"new_day: start-of-day equity must be a number > 0, got {equity!r}")
        self.day_start_equity = float(equity)
        if self.halted:
            log.info("risk: new trading day, daily-loss halt lifted (equity %s)", _money(equity))
        self.halted = False
        self.halt_reason = ""

    def restore_halt(self, reason: str) -> None:
        """Put the daily-loss halt back in force (recorded by an earlier run of the same
        trading day: a restart must not lift it); returns None."""
        self.halted = True
        self.halt_reason = reason or "daily-loss halt recorded earlier today"

    def check(
        self,
        symbol: str,
        side: str,
        quantity: float,
        price: float,
        current_position: float,
        equity: float | None,
        day_start_equity: float | None = None,
        pending: float = 0.0,
        multiplier: float = 1.0,
        what_if: WhatIf | None = None,
    ) -> RiskDecision:
        """Return whether an order may be sent, and why not.

        Args:
            symbol: the symbol (for messages).
            side: ``"BUY"`` or ``"SELL"``.
            quantity: shares, > 0.
            price: the price used for notionals (last / limit / reference price), > 0.
            current_position: signed shares held now (filled).
            pending: signed shares still to fill in working orders and in intents not yet
                acknowledged (+ buys, - sells); counted with the position for every limit.
            equity: current account equity (net liquidation); needed when ``max_daily_loss``
                is set.
            day_start_equity: overrides the value from :meth:`new_day` when given.
            multiplier: the contract multiplier (notional = quantity x price x multiplier).
            what_if: asked for the order's initial margin when ``max_margin_fraction`` is set
                and the order adds exposure (see the module docstring).
        """
        side_u = str(side).strip().upper()
        if side_u not in ("BUY", "SELL"):
            return RiskDecision(False, f"order side {side!r}: expected BUY or SELL", self.halted)
        if quantity is None or not math.isfinite(quantity) or quantity <= 0:
            return RiskDecision(False, f"order {side_u} {quantity!r} {symbol}: quantity must be > 0",
                                self.halted)
        if price is None or not math.isfinite(price) or price <= 0:
            return RiskDecision(False, f"order {side_u} {_qty(quantity)} {symbol}: no valid price "
                                       f"({price!r}) to check the limits against", self.halted)
        held = float(current_position or 0.0)
        pending = float(pending or 0.0)
        if not math.isfinite(pending):
            pending = 0.0
        pos = held + pending  # committed: filled + working + not yet acknowledged
        after = pos + quantity if side_u == "BUY" else pos - quantity
        if abs(after) <= abs(pos) and (after == 0 or math.copysign(1, after) == math.copysign(1, pos)):
            return RiskDecision(True, f"reduces {symbol} from {_qty(pos)} to {_qty(after)} shares",
                                self.halted)

        newly = False
        lim = self.limits
        if lim.max_daily_loss is not None:
            start = day_start_equity if day_start_equity is not None else self.day_start_equity
            if start is None or not start > 0 or equity is None or not math.isfinite(equity):
                return RiskDecision(
                    False,
                    f"{side_u} {_qty(quantity)} {symbol} refused: the daily-loss limit needs the "
                    f"current and start-of-day equity (got {equity!r} and {start!r}); is the "
                    "account data loaded?", self.halted)
            floor = start * (1.0 - lim.max_daily_loss)
            if not self.halted and equity < floor:
                self.halted = True
                newly = True
                loss = 1.0 - equity / start
                self.halt_reason = (
                    f"daily loss limit hit: equity {_money(equity)} is {loss:.2%} below today's "
                    f"start {_money(start)} (max_daily_loss {lim.max_daily_loss:.2%}); new orders "
                    "that add exposure are refused until the next trading day, orders that reduce "
                    "positions are still allowed"
                )
                log.warning("risk: %s", self.halt_reason)
            if self.halted:
                return RiskDecision(False, f"{side_u} {_qty(quantity)} {symbol} refused: "
                                           f"{self.halt_reason}", True, newly)

        mult = float(multiplier) if multiplier and math.isfinite(multiplier) else 1.0
        decision = RiskDecision(True, "ok", self.halted, newly)
        fits = self._fitting(side_u, quantity, price * mult, pos)
        if fits is not None and fits[0] < quantity:
            allowed_qty, limit, text = fits
            if limit not in lim.shrink or allowed_qty < 1:
                return RiskDecision(False, self._limit_reason(side_u, symbol, quantity, price,
                                                              mult, pos, held, pending, limit),
                                    self.halted, newly)
            decision = RiskDecision(True, f"{side_u} {symbol} shrunk from {_qty(quantity)} to "
                                          f"{_qty(allowed_qty)} to fit {limit}: {text}",
                                    self.halted, newly, quantity=allowed_qty)
        if lim.max_margin_fraction is None:
            return decision
        return self._check_margin(decision, side_u, symbol, quantity, price * mult, equity,
                                  what_if)

    def _check_margin(self, decision: RiskDecision, side: str, symbol: str, quantity: float,
                      unit: float, equity: float | None, what_if: WhatIf | None
                      ) -> RiskDecision:
        """Return ``decision`` when the order's initial margin fits ``max_margin_fraction`` of
        ``equity`` (``unit``: the notional of one unit), else a refusal (or, with the limit in
        ``shrink``, the whole quantity whose margin fits)."""
        frac = self.limits.max_margin_fraction
        assert frac is not None  # the caller checks the limit is set
        qty = decision.quantity if decision.quantity is not None else quantity
        if equity is None or not math.isfinite(equity) or equity <= 0:
            return RiskDecision(False, f"{side} {_qty(qty)} {symbol} refused: "
                                       f"max_margin_fraction needs the account's net "
                                       f"liquidation (got {equity!r}); is the account data "
                                       "loaded?", self.halted, decision.newly_halted)
        budget = frac * equity
        margin = what_if(qty) if what_if is not None else None
        source = "IB's what-if"
        if margin is None or not math.isfinite(margin):
            margin, source = qty * unit, "notional: IB gave no what-if margin"
            if symbol not in self._no_margin:
                self._no_margin.add(symbol)
                log.warning("risk: IB gave no what-if margin for %s %s %s: max_margin_fraction "
                            "checks its notional %s instead (said once per symbol)", side,
                            _qty(qty), symbol, _money(margin))
        if margin <= budget:
            return decision
        text = (f"initial margin {_money(margin)} ({source}) exceeds max_margin_fraction "
                f"{frac:.2%} of equity {_money(equity)} = {_money(budget)}")
        fits = units_within(qty, margin, budget)
        if "max_margin_fraction" in self.limits.shrink and fits >= 1:
            return RiskDecision(True, f"{side} {symbol} shrunk from {_qty(quantity)} to "
                                      f"{_qty(fits)} to fit max_margin_fraction: {text}",
                                self.halted, decision.newly_halted, quantity=fits)
        return RiskDecision(False, f"{side} {_qty(qty)} {symbol} refused: {text}", self.halted,
                            decision.newly_halted)

    def _fitting(self, side: str, quantity: float, price: float, pos: float
                 ) -> tuple[float, str, str] | None:
        """Return ``(quantity that fits, the tightest limit, its text)`` when a size limit
        binds, else None (``price``: of one unit, its multiplier included). Whole units only
        (floor)."""
        lim = self.limits
        sign = 1.0 if side == "BUY" else -1.0
        caps: list[tuple[float, str, str]] = []
        if lim.max_order_notional is not None:
            caps.append((math.floor(lim.max_order_notional / price), "max_order_notional",
                         f"{_money(lim.max_order_notional)} per order at {_money(price)}"))
        room_shares = None
        if lim.max_position_per_symbol is not None:
            room_shares = lim.max_position_per_symbol
            caps.append((math.floor(max(0.0, room_shares - sign * pos)),
                         "max_position_per_symbol", f"{_qty(room_shares)} shares"))
        if lim.max_position_notional is not None:
            room = lim.max_position_notional / price
            caps.append((math.floor(max(0.0, room - sign * pos)), "max_position_notional",
                         f"{_money(lim.max_position_notional)} at {_money(price)}"))
        binding = [c for c in caps if c[0] < quantity]
        return min(binding, key=lambda c: c[0]) if binding else None

    def _limit_reason(self, side: str, symbol: str, quantity: float, price: float,
                      mult: float, pos: float, held: float, pending: float, limit: str) -> str:
        lim = self.limits
        after = pos + quantity if side == "BUY" else pos - quantity
        times = f" x {mult:g}" if mult != 1.0 else ""
        if limit == "max_order_notional":
            return (f"order {_qty(quantity)} {symbol} @ {_money(price)}{times} = "
                    f"{_money(quantity * price * mult)} exceeds max_order_notional "
                    f"{_money(lim.max_order_notional)}")
        if limit == "max_position_per_symbol":
            return (f"{side} {_qty(quantity)} {symbol} would take the position from {_qty(pos)} "
                    f"to {_qty(after)} shares{_committed(held, pending)}, above "
                    f"max_position_per_symbol {_qty(lim.max_position_per_symbol)}")
        return (f"{side} {_qty(quantity)} {symbol} would make the position {_qty(after)} x "
                f"{_money(price)}{times} = {_money(abs(after) * price * mult)}"
                f"{_committed(held, pending)}, above max_position_notional "
                f"{_money(lim.max_position_notional)}")
