"""ManagedLedgers: the accounts one simulated login manages, each with its own ledger.

IB lists every account a login manages (an advisor's login, linked accounts) in
``managedAccounts``; an order names the account it is for, and reqPositions reports the
positions of all of them, each under its account code. The login's own account is the
:class:`~bt_ibkr.gateway_sim.broker.SimBroker`'s ``ledger``; :meth:`ManagedLedgers.add`
adds another, whose ledger copies the login account's commission, margin and currency
settings. Account values (reqAccountUpdates, reqAccountUpdatesMulti) are answered for the
account asked for; portfolio rows, account summaries and PnL for the login's own account only.
"""

from __future__ import annotations

import threading

from bt_ibkr.errors import ConfigError

from .account import SimAccount
from .model import SimContract
from .records import PortfolioItem, SimPosition

__all__ = ["ManagedLedgers"]


class ManagedLedgers:
    """The login account's ledger ``own`` plus any added account's (thread-safe with
    ``lock``, the broker's)."""

    def __init__(self, own: SimAccount, lock: threading.RLock) -> None:
        self.own = own
        self._lock = lock
        self._others: dict[str, SimAccount] = {}

    def add(self, account: str, cash: float | None = None) -> SimAccount:
        """Manage ``account`` too, starting with ``cash`` (default: the login account's cash
        now); return its ledger. ConfigError for an empty or already managed id."""
        with self._lock:
            if not account or account in self.names():
                raise ConfigError(f"gateway_sim add_account {account!r}: give a new account id "
                                  f"(managed: {', '.join(self.names())})")
            own = self.own
            self._others[account] = SimAccount(
                account, own.price_of, cash=own.cash if cash is None else cash,
                commission_per_share=own.commission_per_share,
                min_commission=own.min_commission, max_commission_pct=own.max_commission_pct,
                margin_rate=own.margin_rate, currency=own.currency, fx_rates=own.fx_rates)
            return self._others[account]

    def names(self) -> list[str]:
        """Return the managed account ids: the login's own first, then the added ones."""
        return [self.own.account, *self._others]

    def ledger_for(self, account: str | None) -> SimAccount:
        """Return the ledger of ``account`` ("" or None: the login's own account)."""
        if not account or account == self.own.account:
            return self.own
        return self._others.get(account, self.own)

    def values(self, account: str | None) -> list[tuple[str, str, str]]:
        """Return the (key, value, currency) account-value rows of ``account``'s ledger."""
        with self._lock:
            return self.ledger_for(account).values()

    def positions(self) -> list[tuple[str, SimPosition]]:
        """Return ``(account, position)`` for every position of every managed account."""
        with self._lock:
            return [(acc, pos) for acc in self.names()
                    for pos in self.ledger_for(acc).position_list()]

    # the login's own account, as reqAccountUpdates/-Summary/reqPnLSingle report it
    def portfolio(self) -> list[PortfolioItem]:
        """Return one PortfolioItem per position ever held (closed ones report 0)."""
        with self._lock:
            return self.own.portfolio()

    def portfolio_item(self, contract: SimContract) -> PortfolioItem | None:
        """Return the PortfolioItem for ``contract`` or None when never held."""
        with self._lock:
            pos = self.own.positions.get(contract.conId)
            return self.own.portfolio_item(pos) if pos else None

    def numbers(self) -> dict[str, float]:
        """Return the account's numbers: NetLiquidation, TotalCashValue, margins, PnL..."""
        with self._lock:
            return self.own.numbers()

    def summary(self, tags: str) -> list[tuple[str, str, str]]:
        """Return (tag, value, currency) for a reqAccountSummary ``tags`` string."""
        with self._lock:
            return self.own.summary(tags)

    def pnl_single(self, con_id: int) -> tuple[float, float, float, float, float]:
        """Return (position, dailyPnL, unrealizedPnL, realizedPnL, value) for one conId."""
        with self._lock:
            return self.own.pnl_single(con_id)
