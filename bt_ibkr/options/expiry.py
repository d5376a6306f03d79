"""Option expiry in a backtest: settle an option position on the first bar after its expiry.

Rules (OCC exercise by exception, as IB applies it to US options):

* The settlement price is the underlying's close on the expiry date (the last underlying bar
  dated on or before it). An option in the money by at least $0.01 there is exercised (long)
  or assigned (short); otherwise it expires worthless and closes at 0.
* ``settlement="cash"`` (index options such as SPX): the position closes at its intrinsic value
  (``max(S - K, 0)`` for a call, ``max(K - S, 0)`` for a put), times the multiplier.
* ``settlement="physical"`` (equity/ETF options): the option closes at 0 (the premium is spent,
  as IB books an exercise) and ``size x multiplier`` shares of the underlying are bought (long
  call, short put) or sold (long put, short call) at the strike.

How: :class:`OptionExpiry` is a broker mixin (``OptionsBacktestBroker`` = it plus
``BacktestBroker``). Register each option with ``broker.add_expiry(rule)``; at the start of each
broker cycle (before the strategy's ``next``) the broker settles every registered option whose
underlying's current bar is dated after the expiry, with ordinary backtrader orders executed at
the settlement prices (``order.info.reason`` says why), so ``notify_order``/``notify_trade``,
cash and value see them like any fill. Premium accounting uses :class:`OptionCommInfo`
(value = price x multiplier per contract; add it for the option data).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from backtrader.comminfo import CommInfoBase
from backtrader.order import BuyOrder, Order, SellOrder

from bt_ibkr.backtest_broker import BacktestBroker
from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.contracts import parse_dataname

__all__ = ["ITM_THRESHOLD", "ExpiryRule", "OptionCommInfo", "OptionExpiry",
           "OptionsBacktestBroker", "settle_expired", "settlement_of"]

#: OCC exercise-by-exception threshold: in the money by at least this much at expiry
ITM_THRESHOLD = 0.01
SETTLEMENTS = ("physical", "cash")


class OptionCommInfo(CommInfoBase):
    """Commission info of a listed option: premium paid in full (stock-like) and worth
    ``price x mult`` per contract; ``commission`` is per contract (default 0)."""

    params = (("stocklike", True), ("commtype", CommInfoBase.COMM_FIXED),
              ("commission", 0.0), ("mult", 100.0))

    def getoperationcost(self, size, price):
        """Return the cash an order of ``size`` contracts at ``price`` moves."""
        return super().getoperationcost(size, price) * self.p.mult

    def getvaluesize(self, size, price):
        """Return the value of ``size`` contracts at ``price``."""
        return super().getvaluesize(size, price) * self.p.mult

    def getvalue(self, position, price):
        """Return the value of ``position`` at ``price``."""
        return super().getvalue(position, price) * self.p.mult


@dataclass(frozen=True)
class ExpiryRule:
    """One option the broker settles at expiry.

    ``option`` and ``underlying`` are backtrader data feeds; ``right`` is "C" or "P";
    ``settlement`` "physical" (shares of ``underlying`` at the strike) or "cash".
    """

    option: object
    underlying: object
    expiry: date
    strike: float
    right: str
    multiplier: float = 100.0
    settlement: str = "physical"

    def __post_init__(self) -> None:
        if self.right not in ("C", "P"):
            raise ConfigError(f"option right {self.right!r} must be 'C' or 'P'")
        if self.settlement not in SETTLEMENTS:
            raise ConfigError(f"option settlement {self.settlement!r} must be one of "
                              f"{', '.join(SETTLEMENTS)}")
        if not self.strike > 0 or not self.multiplier > 0:
            raise ConfigError(f"option strike {self.strike!r} and multiplier "
                              f"{self.multiplier!r} must be positive")

    @classmethod
    def from_dataname(cls, dataname: str, option, underlying,
                      settlement: str | None = None) -> ExpiryRule:
        """Return the rule for an option written as a dataname
        (``SPY-OPT-SMART-USD-20240119-470-C-100``; multiplier 100 when absent). Settlement
        defaults to "cash" for options on an index (``underlying``'s name is an ``-IND-``
        dataname or a Yahoo index such as ``^GSPC``) and "physical" otherwise. Raises ConfigError naming a dataname that is not an option.
        """
        spec = parse_dataname(dataname)
        if spec.sectype != "OPT":
            raise ConfigError(f"dataname {dataname!r} is not an option (…-OPT-…)")
        if settlement is None:
            und = str(getattr(underlying, "_name", "") or "")
            index = "-IND" in und.upper() or und.startswith("^")  # SPX-IND-CBOE, ^GSPC
            settlement = "cash" if index else "physical"
        return cls(option=option, underlying=underlying,
                   expiry=datetime.strptime(spec.expiry[:8], "%Y%m%d").date(),
                   strike=float(spec.strike), right=spec.right,
                   multiplier=float(spec.multiplier or 100), settlement=settlement)

    def intrinsic(self, spot: float) -> float:
        """Return the option's intrinsic value per share at underlying price ``spot``."""
        return max(spot - self.strike, 0.0) if self.right == "C" else max(self.strike - spot, 0.0)


def settlement_of(rule: ExpiryRule) -> tuple[date, float] | None:
    """Return (date, close) of the underlying's last bar dated on or before the expiry, or None
    when the underlying has no such bar."""
    data = rule.underlying
    for ago in range(0, -len(data), -1):
        day = data.datetime.date(ago)
        if day <= rule.expiry:
            return day, float(data.close[ago])
    return None


def _due(rule: ExpiryRule) -> bool:
    return len(rule.underlying) > 0 and rule.underlying.datetime.date(0) > rule.expiry


class OptionExpiry:
    """Broker mixin that settles registered options at expiry (see the module docstring)."""

    def add_expiry(self, rule: ExpiryRule) -> None:
        """Register ``rule``; its option is settled once, on the first bar after expiry."""
        self.__dict__.setdefault("_expiry_rules", []).append(rule)

    def expiry_rules(self) -> list[ExpiryRule]:
        """Return the rules not settled yet."""
        return list(self.__dict__.get("_expiry_rules", []))

    def next(self):
        """Settle what is due, then run the broker's own cycle."""
        rules = self.__dict__.get("_expiry_rules", [])
        due = [r for r in rules if _due(r)]
        for rule in due:
            rules.remove(rule)
            settle_expired(self, rule)
        super().next()

    def fill_at(self, data, size: float, price: float, reason: str) -> Order:
        """Execute a market order of ``size`` on ``data`` at ``price`` now (a settlement)."""
        cls = BuyOrder if size > 0 else SellOrder
        order = cls(owner=None, data=data, size=abs(size), price=price,
                    exectype=Order.Market)
        order.addinfo(reason=reason)
        order.addcomminfo(self.getcommissioninfo(data))
        self._ocoize(order, None)  # BackBroker's bookkeeping for every order it executes
        order.submit(self)
        order.accept(self)
        self.orders.append(order)
        self._execute(order, ago=0, price=price)
        return order


def settle_expired(broker, rule: ExpiryRule) -> list[Order]:
    """Settle ``rule``'s option position on ``broker`` (an :class:`OptionExpiry`) and return
    the orders executed (none when the position is flat). Raises ConfigError when the
    underlying has no bar on or before the expiry (no settlement price)."""
    size = broker.getposition(rule.option).size
    if not size:
        return []
    found = settlement_of(rule)
    if found is None:
        raise ConfigError(f"no {rule.underlying._name!r} bar on or before the option's expiry "
                          f"{rule.expiry}: cannot settle it")
    day, spot = found
    value = rule.intrinsic(spot)
    itm = round(value, 6) >= ITM_THRESHOLD
    what = f"{rule.right}{rule.strike:g} {rule.expiry}"
    if not itm:
        return [broker.fill_at(rule.option, -size, 0.0,
                               f"expired worthless: {what} (underlying {spot:g} on {day})")]
    if rule.settlement == "cash":
        return [broker.fill_at(rule.option, -size, value,
                               f"cash-settled at {value:g}: {what} (underlying {spot:g})")]
    verb = "exercised" if size > 0 else "assigned"
    shares = size * rule.multiplier * (1 if rule.right == "C" else -1)
    return [broker.fill_at(rule.option, -size, 0.0, f"{verb}: {what}"),
            broker.fill_at(rule.underlying, shares, rule.strike,
                           f"{verb}: {what}, {shares:+g} shares at {rule.strike:g}")]


class OptionsBacktestBroker(OptionExpiry, BacktestBroker):
    """BacktestBroker that settles registered options at expiry."""
