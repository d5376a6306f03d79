"""CurrencyLedger: cash per currency, valued in the account's base currency.

Modelled on QuantConnect LEAN's CashBook (a ``Cash`` per currency with a conversion rate to
the account currency, kept current from a price feed of the pair) and on the account values
TWS pushes through reqAccountUpdates: per currency a ``CashBalance`` row and an
``ExchangeRate`` row (the value of one unit of that currency in the base currency), plus
``BASE`` rows holding the totals already converted.

Rates come from either source, the latest one winning:

* :meth:`CurrencyLedger.on_account_value` takes TWS's ``ExchangeRate``/``CashBalance`` rows;
* :meth:`CurrencyLedger.on_fx_price` takes a pair's latest price (EUR.USD at 1.08 in a GBP
  account: EUR = 1.08 x the USD rate; in a USD account: EUR = 1.08; USD.JPY in a USD account:
  JPY = 1/price).

A value in a currency without a known rate raises :class:`MissingRateError` naming it: the
ledger never guesses 1.0.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from bt_ibkr.errors import DataError
from bt_ibkr.fx.pairs import FxPair, parse_pair

__all__ = ["CurrencyLedger", "Holding", "MissingRateError"]

#: account-value tags that carry a currency's own cash balance
CASH_BALANCE_TAGS = ("CashBalance", "TotalCashBalance")


class MissingRateError(DataError, KeyError):
    """A value is in a currency whose rate to the base currency is not known yet."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Holding:
    """A position to value: ``size`` units at ``price`` in ``currency`` (times
    ``multiplier``). Forex positions are not holdings: their value is in the cash balances."""

    size: float
    price: float
    currency: str
    multiplier: float = 1.0

    @property
    def value(self) -> float:
        """Return the market value in ``currency``."""
        return self.size * self.price * self.multiplier


class CurrencyLedger:
    """Cash per currency and the rates that convert it to ``base`` (thread-safe)."""

    def __init__(self, base: str, cash: dict[str, float] | None = None) -> None:
        base = str(base or "").strip().upper()
        if len(base) != 3 or not base.isalpha():
            raise DataError(f"base currency {base!r}: give a currency code such as USD or GBP")
        self.base = base
        self._lock = threading.Lock()
        self._balances: dict[str, float] = {base: 0.0}
        self._rates: dict[str, float] = {base: 1.0}
        for ccy, amount in (cash or {}).items():
            self._balances[ccy.upper()] = float(amount)

    # ------------------------------------------------------------------ rates
    def set_rate(self, ccy: str, rate: float) -> None:
        """Record that one ``ccy`` is worth ``rate`` base units (rate > 0; DataError else)."""
        ccy = ccy.upper()
        rate = float(rate)
        if not rate > 0:
            raise DataError(f"exchange rate {rate!r} for {ccy} in {self.base}: must be > 0")
        if ccy == self.base:
            return
        with self._lock:
            self._rates[ccy] = rate

    def rate(self, ccy: str) -> float:
        """Return the value of one ``ccy`` in the base currency; MissingRateError if unknown."""
        ccy = (ccy or self.base).upper()
        with self._lock:
            rate = self._rates.get(ccy)
        if rate is None:
            raise MissingRateError(
                f"no exchange rate from {ccy} to the base currency {self.base} yet: feed a "
                f"{ccy} pair (e.g. {ccy}.{self.base}-CASH-IDEALPRO) or wait for the "
                "account's ExchangeRate values")
        return rate

    def rates(self) -> dict[str, float]:
        """Return every known rate ``{ccy: base units per unit}`` (a copy)."""
        with self._lock:
            return dict(self._rates)

    def on_fx_price(self, pair: FxPair | str, price: float) -> None:
        """Update the rates from ``pair``'s latest ``price`` (quote units per base unit).

        The pair's base currency gets ``price x rate(quote)`` when the quote's rate is known;
        else its quote currency gets ``rate(base) / price`` when the base's is. A pair with
        neither known changes nothing."""
        pair = parse_pair(pair) if isinstance(pair, str) else pair
        price = float(price)
        if not price > 0:
            return
        known = self.rates()
        if pair.quote in known:
            self.set_rate(pair.base, price * known[pair.quote])
        elif pair.base in known:
            self.set_rate(pair.quote, known[pair.base] / price)

    def on_account_value(self, tag: str, value: str, currency: str) -> None:
        """Take one reqAccountUpdates row: ``ExchangeRate`` sets ``currency``'s rate,
        ``CashBalance``/``TotalCashBalance`` its balance; ``BASE`` rows (totals) and other
        tags are ignored."""
        ccy = (currency or "").upper()
        if not ccy or ccy == "BASE":
            return
        try:
            number = float(value)
        except (TypeError, ValueError):
            return
        if tag == "ExchangeRate":
            if number > 0:
                self.set_rate(ccy, number)
        elif tag in CASH_BALANCE_TAGS:
            with self._lock:
                self._balances[ccy] = number

    # ------------------------------------------------------------------ cash
    def balance(self, ccy: str) -> float:
        """Return the cash held in ``ccy`` (its own units; 0.0 when none)."""
        with self._lock:
            return self._balances.get(ccy.upper(), 0.0)

    def balances(self) -> dict[str, float]:
        """Return the cash per currency (a copy)."""
        with self._lock:
            return dict(self._balances)

    def add_cash(self, ccy: str, amount: float) -> None:
        """Add ``amount`` (negative: take) to the ``ccy`` balance."""
        ccy = ccy.upper()
        with self._lock:
            self._balances[ccy] = self._balances.get(ccy, 0.0) + float(amount)

    def apply_fill(self, currency: str, signed: float, price: float, multiplier: float = 1.0,
                   commission: float = 0.0) -> None:
        """Book a fill of ``signed`` units of a non-forex contract priced in ``currency``:
        that balance pays ``signed x price x multiplier + commission``."""
        self.add_cash(currency, -(signed * price * multiplier + commission))

    def apply_fx_fill(self, pair: FxPair | str, signed: float, price: float,
                      commission: float = 0.0, commission_ccy: str | None = None) -> None:
        """Book a forex fill of ``signed`` base units of ``pair`` at ``price``: the pair's
        base currency changes by ``signed``, its quote currency by ``-signed x price``; the
        commission is taken from ``commission_ccy`` (default: the account's base)."""
        pair = parse_pair(pair) if isinstance(pair, str) else pair
        self.add_cash(pair.base, signed)
        self.add_cash(pair.quote, -signed * price)
        if commission:
            self.add_cash(commission_ccy or self.base, -commission)

    # ------------------------------------------------------------------ values
    def to_base(self, amount: float, ccy: str) -> float:
        """Return ``amount`` of ``ccy`` in the base currency (MissingRateError if unknown)."""
        return float(amount) * self.rate(ccy)

    def cash_value(self) -> float:
        """Return every balance converted to the base currency."""
        return sum(self.to_base(amount, ccy) for ccy, amount in self.balances().items()
                   if amount)

    def holdings_value(self, holdings: Iterable[Holding]) -> float:
        """Return the market value of ``holdings`` in the base currency."""
        return sum(self.to_base(h.value, h.currency) for h in holdings)

    def net_liquidation(self, holdings: Iterable[Holding] = ()) -> float:
        """Return cash plus ``holdings``, in the base currency."""
        return self.cash_value() + self.holdings_value(holdings)
