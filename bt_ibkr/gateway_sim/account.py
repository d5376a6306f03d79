"""SimAccount: the simulator's single-account ledger: cash, positions, commission, margin, PnL.

* Commission (IB tiered-like): per order, ``min(max(cumQty * per_share, min_commission),
  max_commission_pct * cumValue)``; each execution is charged the increase of that amount.
  Position avgCost includes commissions (as IB reports it), times the multiplier.
* Margin (whatIf and account values): initial = maintenance = ``margin_rate`` (0.25) of the
  gross position value; BuyingPower = AvailableFunds / margin_rate.
* Futures (FUT) are settled in P&L, as IB books them: a fill moves the cash by its commission
  only, closing contracts moves it by the realized P&L (exit - entry price, x multiplier), and
  the open P&L of the futures held counts in NetLiquidation (and the ``FuturesPNL`` row), never
  their notional; IB's daily variation settlement (the open P&L moved into cash at each
  day's settlement price) is not simulated. A portfolio row still reports the notional as its
  market value, as IB's updatePortfolio does; margins are ``margin_rate`` of it.
* Positions are marked at the last price ``price_of(contract)`` reports (the last trade, else
  the close), or at their average cost when there is none.
* Currencies: ``currency`` is the account's base currency. Cash is kept per currency
  (:attr:`balances`); a fill moves the contract currency's balance, and a forex (CASH) fill
  also moves the base currency of the pair (buying 25,000 EUR.USD: EUR +25,000, USD
  -25,000 x price). A foreign currency is converted to the base at ``fx_rates[ccy]`` (the
  value of one unit in the base currency; fixed, as configured) or, when not configured, at
  the mark of a held CASH pair ``CCY.QUOTE`` times the quote currency's rate. Account values
  carry ``BASE`` rows (totals in the base currency), the base currency's rows, and per held
  currency ``Currency``, ``ExchangeRate``, ``CashBalance``, ``TotalCashBalance`` and
  ``NetLiquidationByCurrency`` rows, as TWS's reqAccountUpdates does. Portfolio values stay
  in the contract's currency (IB's updatePortfolio does too); account totals are in the base.

Not thread-safe on its own: :class:`~bt_ibkr.gateway_sim.broker.SimBroker` calls it under its
lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from .model import Quote, SimContract
from .order_codec import OrderSpec, OrderStateInfo
from .records import PortfolioItem, SimPosition


class SimAccount:
    """The ledger of ``account`` (see the module docstring)."""

    def __init__(self, account: str, price_of: Callable[[SimContract], Quote | None],
                 cash: float = 1_000_000.0, commission_per_share: float = 0.005,
                 min_commission: float = 1.0, max_commission_pct: float = 0.01,
                 margin_rate: float = 0.25, currency: str = "USD",
                 fx_rates: dict[str, float] | None = None) -> None:
        self.account = account
        self.price_of = price_of
        #: value of one unit of a foreign currency in the base currency (``currency``)
        self.fx_rates = {str(k).upper(): float(v) for k, v in (fx_rates or {}).items()}
        #: cash per currency (the base currency's entry always exists)
        self.balances: dict[str, float] = {currency: float(cash)}
        self.commission_per_share = commission_per_share
        self.min_commission = min_commission
        self.max_commission_pct = max_commission_pct
        self.margin_rate = margin_rate
        self.currency = currency
        #: conId -> position (closed ones stay, with position 0)
        self.positions: dict[int, SimPosition] = {}
        self.realized_total = 0.0
        #: conId -> average entry price of an open futures position (commission excluded)
        self.futures_entry: dict[int, float] = {}
        self._day_start: tuple[date, float] | None = None

    # ------------------------------------------------------------------ currencies
    @property
    def cash(self) -> float:
        """Return the cash of every currency, converted to the base currency."""
        return sum(amount * self.rate(ccy) for ccy, amount in self.balances.items())

    @cash.setter
    def cash(self, value: float) -> None:
        """Set the account to hold ``value`` of the base currency and no other cash."""
        self.balances = {self.currency: float(value)}

    def set_fx_rates(self, fx_rates: dict[str, float] | None) -> None:
        """Set the configured rates (``{ccy: value of one unit in the base currency}``);
        ConfigError when the base currency is not USD and no USD rate is given (see
        :func:`check_base_currency`)."""
        check_base_currency(self.currency, fx_rates)
        self.fx_rates = {str(k).upper(): float(v) for k, v in (fx_rates or {}).items()}

    def rate(self, ccy: str) -> float:
        """Return the value of one unit of ``ccy`` in the base currency: 1 for the base, the
        configured ``fx_rates`` entry, else a held CASH pair's mark times its quote currency's
        rate. Raises KeyError naming the currency when none of these is known."""
        ccy = (ccy or self.currency).upper()
        if ccy == self.currency:
            return 1.0
        if ccy in self.fx_rates:
            return self.fx_rates[ccy]
        for pos in self.positions.values():
            c = pos.contract
            if c.secType == "CASH" and c.symbol == ccy and c.currency != ccy:
                return self._mark(c) * self.rate(c.currency)
        raise KeyError(f"gateway_sim account {self.account} (base {self.currency}) has no "
                       f"exchange rate for {ccy}; pass fx_rates={{{ccy!r}: ...}}")

    # ------------------------------------------------------------------ trading
    def commission(self, qty: float, value: float) -> float:
        """Return the commission of an order with ``qty`` shares filled worth ``value``."""
        fee = max(qty * self.commission_per_share, self.min_commission)
        if self.max_commission_pct:
            fee = min(fee, self.max_commission_pct * value)
        return fee

    def apply_fill(self, contract: SimContract, signed: float, price: float,
                   commission: float) -> float | None:
        """Book a fill of ``signed`` shares at ``price``: cash and position; return the
        realized PnL (None when nothing was closed)."""
        mult = multiplier(contract)
        ccy = contract.currency or self.currency
        if contract.secType == "FUT":
            self.balances[ccy] = self.balances.get(ccy, 0.0) + self._settle_future(
                contract.conId, signed, price, mult) - commission
        else:
            self.balances[ccy] = self.balances.get(ccy, 0.0) - (signed * price * mult
                                                                  + commission)
        if contract.secType == "CASH":  # the pair's base currency is bought or sold
            self.balances[contract.symbol] = self.balances.get(contract.symbol, 0.0) + signed
        pos = self.positions.setdefault(contract.conId, SimPosition(contract))
        old = pos.position
        if old == 0 or (old > 0) == (signed > 0):
            total_cost = old * pos.avg_cost + signed * price * mult + commission
            pos.position = old + signed
            pos.avg_cost = total_cost / pos.position if pos.position else 0.0
            return None
        closing = min(abs(signed), abs(old)) * _sign(signed)
        opening = signed - closing
        comm_close = commission * abs(closing) / abs(signed)
        comm_open = commission - comm_close
        # closing a long: sell proceeds - cost basis; closing a short: basis - buy cost
        realized = (-closing) * (price * mult - pos.avg_cost) - comm_close
        pos.position = old + closing
        pos.realized_pnl += realized
        self.realized_total += realized * self.rate(ccy)
        if abs(pos.position) < 1e-12:
            pos.position = 0.0
            pos.avg_cost = 0.0
        if opening:
            pos.position = opening
            pos.avg_cost = (opening * price * mult + comm_open) / opening
        return realized

    def _settle_future(self, con_id: int, signed: float, price: float, mult: float) -> float:
        """Return the cash a futures fill of ``signed`` contracts at ``price`` realizes (the
        closed part's exit - entry price, x ``mult``) and keep the open part's entry price."""
        held = self.held(con_id)
        entry = self.futures_entry.get(con_id, price)
        if held == 0 or (held > 0) == (signed > 0):  # opening or adding: a new average entry
            self.futures_entry[con_id] = (held * entry + signed * price) / (held + signed)
            return 0.0
        closing = min(abs(signed), abs(held)) * _sign(signed)
        rest = held + signed
        if rest == 0 or (rest > 0) == (held > 0):
            self.futures_entry[con_id] = entry  # reduced: the same entry
        else:
            self.futures_entry[con_id] = price  # through zero: the new side opens here
        return -closing * (price - entry) * mult

    def _open_pnl(self, pos: SimPosition) -> float:
        """Return a futures position's P&L from its entry price to its mark."""
        if not pos.position:
            return 0.0
        entry = self.futures_entry.get(pos.contract.conId, pos.avg_cost)
        return pos.position * (self._mark(pos.contract) - entry) * multiplier(pos.contract)

    def what_if(self, contract: SimContract, spec: OrderSpec, q: Quote | None) -> OrderStateInfo:
        """Return the margin and commission a whatIf order reports: priced at its limit (LMT)
        or the quote ``q``'s last price; nothing is booked."""
        price = spec.lmtPrice or spec.auxPrice or 0.0
        if q is not None:
            last = q.last if q.last and q.last > 0 else q.close
            price = spec.lmtPrice if spec.orderType.upper() == "LMT" and spec.lmtPrice else last
        mult = multiplier(contract)
        nums = self.numbers()
        held = self.held(contract.conId)
        signed = spec.totalQuantity if spec.action.upper() == "BUY" else -spec.totalQuantity
        gross_change = (abs(held + signed) - abs(held)) * price * mult
        margin_change = gross_change * self.margin_rate
        commission = self.commission(spec.totalQuantity, spec.totalQuantity * price * mult)
        init_before = nums["InitMarginReq"]
        ewl_before = nums["EquityWithLoanValue"]
        return OrderStateInfo(
            status="PreSubmitted",
            initMarginBefore=_money(init_before),
            maintMarginBefore=_money(nums["MaintMarginReq"]),
            equityWithLoanBefore=_money(ewl_before),
            initMarginChange=_money(margin_change),
            maintMarginChange=_money(margin_change),
            equityWithLoanChange=_money(-commission),
            initMarginAfter=_money(init_before + margin_change),
            maintMarginAfter=_money(nums["MaintMarginReq"] + margin_change),
            equityWithLoanAfter=_money(ewl_before - commission),
            commission=commission,
            minCommission=commission,
            maxCommission=commission,
            commissionCurrency=self.currency,
        )

    def held(self, con_id: int) -> float:
        """Return the position in ``con_id`` (0.0 when none)."""
        pos = self.positions.get(con_id)
        return pos.position if pos else 0.0

    # ------------------------------------------------------------------ reports
    def position_list(self) -> list[SimPosition]:
        """Return copies of every position ever held (closed ones with position 0), by conId."""
        return [replace(p) for _, p in sorted(self.positions.items())]

    def _mark(self, contract: SimContract) -> float:
        q = self.price_of(contract)
        if q is None:
            pos = self.positions.get(contract.conId)
            return pos.avg_cost / multiplier(contract) if pos and pos.position else 0.0
        return q.last if q.last and q.last > 0 else q.close

    def portfolio_item(self, pos: SimPosition) -> PortfolioItem:
        """Return what a portfolioValue message reports for ``pos``."""
        mult = multiplier(pos.contract)
        price = self._mark(pos.contract)
        value = pos.position * price * mult
        unreal = value - pos.position * pos.avg_cost if pos.position else 0.0
        return PortfolioItem(pos.contract, pos.position, price, value, pos.avg_cost,
                             unreal, pos.realized_pnl)

    def portfolio(self) -> list[PortfolioItem]:
        """Return one PortfolioItem per position ever held (closed ones report 0)."""
        return [self.portfolio_item(p) for _, p in sorted(self.positions.items())]

    def numbers(self) -> dict[str, float]:
        """Return the account's numbers: NetLiquidation, TotalCashValue, margins, PnL..."""
        gross = market = unreal = futures = 0.0
        for pos in self.positions.values():
            item = self.portfolio_item(pos)
            rate = self.rate(pos.contract.currency)
            gross += abs(item.market_value) * rate
            unreal += item.unrealized_pnl * rate
            if pos.contract.secType == "FUT":  # settled in P&L: only the open P&L counts
                futures += self._open_pnl(pos) * rate
            elif pos.contract.secType != "CASH":  # a forex position is in the cash balances
                market += item.market_value * rate
        net = self.cash + market + futures
        margin = gross * self.margin_rate
        available = net - margin
        return {
            "NetLiquidation": net,
            "TotalCashValue": self.cash,
            "SettledCash": self.cash,
            "CashBalance": self.cash,
            "AccruedCash": 0.0,
            "GrossPositionValue": gross,
            "StockMarketValue": market,
            "FuturesPNL": futures,
            "EquityWithLoanValue": net,
            "InitMarginReq": margin,
            "MaintMarginReq": margin,
            "FullInitMarginReq": margin,
            "FullMaintMarginReq": margin,
            "AvailableFunds": available,
            "FullAvailableFunds": available,
            "ExcessLiquidity": available,
            "FullExcessLiquidity": available,
            "BuyingPower": available / self.margin_rate if self.margin_rate else available,
            "UnrealizedPnL": unreal,
            "RealizedPnL": self.realized_total,
            "Leverage-S": gross / net if net else 0.0,
        }

    def values(self) -> list[tuple[str, str, str]]:
        """Return (key, value, currency) rows as reqAccountUpdates reports them.

        Money totals come twice, with the base currency and BASE; a few are currency-less.
        Cash comes per currency: ``CashBalance``/``TotalCashBalance``/
        ``NetLiquidationByCurrency`` of each currency held (its own units) and of ``BASE`` (all
        of them in the base currency), with each currency's ``ExchangeRate`` to the base.
        """
        nums = self.numbers()
        base = self.currency
        rows: list[tuple[str, str, str]] = [
            ("AccountCode", self.account, ""),
            ("AccountType", "INDIVIDUAL", ""),
            ("AccountReady", "true", ""),
            ("Currency", base, base),
            ("Currency", "BASE", "BASE"),
            ("ExchangeRate", "1.00", base),
            ("ExchangeRate", "1.00", "BASE"),
            ("DayTradesRemaining", "-1", ""),
        ]
        for ccy in sorted(c for c in self.balances if c != base):
            rows.append(("Currency", ccy, ccy))
            rows.append(("ExchangeRate", f"{self.rate(ccy):.8g}", ccy))
        per_ccy = ("CashBalance", "TotalCashBalance", "NetLiquidationByCurrency")
        for key, value in nums.items():
            if key == "Leverage-S":
                rows.append((key, f"{value:.2f}", ""))
                continue
            if key == "CashBalance":
                continue
            for ccy in (base, "BASE"):
                rows.append((key, f"{value:.2f}", ccy))
        for key in per_ccy:
            for ccy in sorted(self.balances, key=lambda c: (c != base, c)):
                amount = self.balances[ccy]
                if key == "NetLiquidationByCurrency" and ccy == base:
                    amount = nums["NetLiquidation"] - sum(
                        v * self.rate(c) for c, v in self.balances.items() if c != base)
                rows.append((key, f"{amount:.2f}", ccy))
            total = nums["NetLiquidation"] if key == "NetLiquidationByCurrency" else self.cash
            rows.append((key, f"{total:.2f}", "BASE"))
        return rows

    def summary(self, tags: str) -> list[tuple[str, str, str]]:
        """Return (tag, value, currency) for a reqAccountSummary ``tags`` string.

        Unknown tags are skipped; "$LEDGER"/"$LEDGER:ALL"/"$LEDGER:USD" give the ledger rows.
        """
        nums = self.numbers()
        out: list[tuple[str, str, str]] = []
        for tag in [t.strip() for t in tags.split(",") if t.strip()]:
            if tag.startswith("$LEDGER"):
                for key in ("CashBalance", "TotalCashValue", "NetLiquidation",
                            "UnrealizedPnL", "RealizedPnL", "StockMarketValue"):
                    out.append((key, f"{nums[key]:.2f}", self.currency))
            elif tag == "AccountType":
                out.append((tag, "INDIVIDUAL", ""))
            elif tag == "Cushion":
                net = nums["NetLiquidation"]
                out.append((tag, f"{nums['ExcessLiquidity'] / net if net else 0:.4f}", ""))
            elif tag in ("DayTradesRemaining",):
                out.append((tag, "-1", ""))
            elif tag == "Leverage":
                out.append((tag, f"{nums['Leverage-S']:.2f}", ""))
            elif tag in ("LookAheadNextChange", "HighestSeverity", "SegmentTitle"):
                out.append((tag, "0", ""))
            else:
                key = tag
                if tag.startswith("LookAhead"):
                    key = tag[len("LookAhead"):]
                if key in nums:
                    out.append((tag, f"{nums[key]:.2f}", self.currency))
        return out

    def touch_day(self, today: date, current: float | None = None) -> None:
        """Record the NetLiquidation at the first event of each UTC day (for dailyPnL)."""
        if self._day_start is None or self._day_start[0] != today:
            if current is None:
                current = self.numbers()["NetLiquidation"]
            self._day_start = (today, current)

    def pnl(self, today: date) -> tuple[float, float, float]:
        """Return (dailyPnL, unrealizedPnL, realizedPnL) for the account."""
        nums = self.numbers()
        self.touch_day(today, nums["NetLiquidation"])
        daily = nums["NetLiquidation"] - self._day_start[1]  # type: ignore[index]
        return daily, nums["UnrealizedPnL"], nums["RealizedPnL"]

    def pnl_single(self, con_id: int) -> tuple[float, float, float, float, float]:
        """Return (position, dailyPnL, unrealizedPnL, realizedPnL, value) for one conId."""
        pos = self.positions.get(con_id)
        if pos is None:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        item = self.portfolio_item(pos)
        return (item.position, item.unrealized_pnl, item.unrealized_pnl,
                item.realized_pnl, item.market_value)


def check_base_currency(currency: str, fx_rates: dict[str, float] | None) -> None:
    """Raise ConfigError unless an account with base ``currency`` can value what the simulator
    trades: every simulated contract is quoted in USD, so a non-USD base needs
    ``fx_rates["USD"]`` (the value of one USD in the base currency) > 0."""
    from bt_ibkr.errors import ConfigError

    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise ConfigError(f"gateway_sim currency {currency!r}: give a base currency code such "
                          "as 'USD' or 'GBP'")
    rates = fx_rates or {}
    for ccy, rate in rates.items():
        if not isinstance(rate, int | float) or not rate > 0:
            raise ConfigError(f"gateway_sim fx_rates[{ccy!r}] = {rate!r}: give the value of one "
                              f"{ccy} in {currency}, a number > 0")
    if currency != "USD" and "USD" not in {str(c).upper() for c in rates}:
        raise ConfigError(f"gateway_sim base currency {currency} needs fx_rates={{'USD': ...}} "
                          f"(the value of one USD in {currency}): the simulated contracts "
                          "are quoted in USD")


UNSET_DOUBLE_TEXT = "1.7976931348623157E308"
"""How IB writes a number it does not set (Java's Double.MAX_VALUE) in an order state."""


def without_margin(state: OrderStateInfo) -> OrderStateInfo:
    """Return ``state`` with every margin and equity field unset, as TWS answers a whatIf
    for which it computes no margin (ib_async's wrapper waits for an openOrder whose
    initMarginChange is set before it ends the request: such an answer never does)."""
    unset = UNSET_DOUBLE_TEXT
    return replace(state, initMarginBefore=unset, maintMarginBefore=unset,
                   equityWithLoanBefore=unset, initMarginChange=unset, maintMarginChange=unset,
                   equityWithLoanChange=unset, initMarginAfter=unset, maintMarginAfter=unset,
                   equityWithLoanAfter=unset)


def multiplier(contract: SimContract) -> float:
    """Return the contract's multiplier as a number (1.0 when it has none)."""
    try:
        return float(contract.multiplier) if contract.multiplier else 1.0
    except ValueError:
        return 1.0


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def _money(x: float) -> str:
    return f"{x:.2f}"
