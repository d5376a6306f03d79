"""One currency per run: the account's base currency must be the traded contracts' currency.

IBBroker keeps a run's money in one currency: it starts from the account's cash and net
liquidation as TWS reports them in the account's BASE currency, and adds the positions at
their contracts' prices. A Strategy then sizes ``value / (price x multiplier)``. When the
account keeps its books in GBP and the contract trades in USD, both sums mix currencies and
every order is off by the exchange rate (about 20% for GBP/USD), where the backtest of the
same Strategy was not. Until the broker converts between currencies, such an order stops the
run before it is journaled or sent: :class:`CurrencyMismatchError` (a ConfigError, exit 2),
one line naming the contract, both currencies and what to do.

The account's base currency is the currency TWS reports its ``NetLiquidation`` in (the row
that is not ``BASE``); before the account values arrive it is unknown and nothing is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from bt_ibkr.errors import ConfigError

__all__ = ["CurrencyMismatchError", "account_base_currency", "check_order_currency"]


class CurrencyMismatchError(ConfigError):
    """An order in a currency other than the account's base currency."""


def account_base_currency(values: Mapping[tuple[str, str, str], str],
                          account: str | None) -> str | None:
    """Return the base currency of ``account`` from its account values (``{(account, tag,
    currency): value}``, as :meth:`~bt_ibkr.ib.store.IBStore.get_acc_values` gives them): the
    currency of its ``NetLiquidation`` row that is not ``BASE``; None while unknown."""
    for acc, tag, currency in values:
        if tag == "NetLiquidation" and currency and currency != "BASE" and (
                account is None or acc == account):
            return currency.upper()
    return None


def check_order_currency(symbol: str, contract_currency: str, base: str | None,
                         account: str | None) -> None:
    """Return None when ``contract_currency`` is the account's ``base`` currency (or either is
    unknown).

    Raises:
        CurrencyMismatchError: they differ; the message names the contract, both currencies
            and what to do.
    """
    ccy = (contract_currency or "").upper()
    if not ccy or base is None or ccy == base:
        return
    raise CurrencyMismatchError(
        f"{symbol} trades in {ccy} and account {account or '?'} keeps its books in {base}: "
        f"bt_ibkr sizes and values a run in one currency, so this order's size would be off "
        f"by the {ccy}/{base} rate; nothing was sent. Trade {base} instruments on this "
        f"account, or {ccy} ones on a {ccy}-base account (docs/SETUP.md, FX and base currency)")
