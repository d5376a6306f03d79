"""ManagedLedgers: the accounts one simulated login manages, each with its own ledger.

IB lists every account a login manages (an advisor's login, linked accounts) in
``managedAccounts``; an order names the account it is for, and reqPositions reports the
positions of all of them, each under its account code. The login's own account is the
:class:`~bt_ibkr.gateway_sim.broker.SimBroker`'s ``ledger``; :meth:`ManagedLedgers.add`
adds another, whose ledger copies the login account's commission, margin and currency
settings. Every report is per account, as IB answers an advisor's login: account values and
portfolio rows (reqAccountUpdates(account), reqAccountUpdatesMulti), PnL (reqPnL(account),
reqPnLSingle(account, conId)) and positions (reqPositionsMulti(account)) for the account
asked for (none named: the login's own); an account summary (reqAccountSummary, group "All")
lists every managed account's tags, each under its code. The TWS API reference's rules:
``reqAccountUpdates(subscribe, acctCode)`` "subscribes to a specific account's information and
portfolio" (one account at a time per client); ``reqAccountSummary`` with group "All" returns
"all accounts"; ``reqPnL(reqId, account, modelCode)`` and ``reqPnLSingle(reqId, account,
modelCode, conId)`` answer for the account given; ``reqPositionsMulti(reqId, account,
modelCode)`` for that account.
"""

from __future__ import annotations

import threading
from datetime import date

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

    def held_anywhere(self, con_id: int) -> bool:
        """True when any managed account holds ``con_id`` (its price moves revalue it)."""
        with self._lock:
            return any(self.ledger_for(acc).held(con_id) for acc in self.names())

    def code(self, account: str | None) -> str:
        """Return the code of the account a request names ("" or None, or one not managed:
        the login's own)."""
        return self.ledger_for(account).account

    # per account, as reqAccountUpdates/-Summary/reqPnL/reqPnLSingle report it (None: the
    # login's own account)
    def portfolio(self, account: str | None = None) -> list[PortfolioItem]:
        """Return one PortfolioItem per position ``account`` ever held (closed ones report
        0)."""
        with self._lock:
            return self.ledger_for(account).portfolio()

    def portfolio_item(self, contract: SimContract,
                       account: str | None = None) -> PortfolioItem | None:
        """Return ``account``'s PortfolioItem for ``contract``, None when it never held it."""
        with self._lock:
            ledger = self.ledger_for(account)
            pos = ledger.positions.get(contract.conId)
            return ledger.portfolio_item(pos) if pos else None

    def numbers(self, account: str | None = None) -> dict[str, float]:
        """Return ``account``'s numbers: NetLiquidation, TotalCashValue, margins, PnL..."""
        with self._lock:
            return self.ledger_for(account).numbers()

    def summary(self, tags: str, account: str | None = None) -> list[tuple[str, str, str]]:
        """Return ``account``'s (tag, value, currency) rows for a reqAccountSummary ``tags``
        string."""
        with self._lock:
            return self.ledger_for(account).summary(tags)

    def summary_all(self, tags: str) -> list[tuple[str, str, str, str]]:
        """Return (account, tag, value, currency) for every managed account, the login's own
        first: what reqAccountSummary(group "All") reports."""
        with self._lock:
            return [(acc, *row) for acc in self.names()
                    for row in self.ledger_for(acc).summary(tags)]

    def pnl(self, today: date, account: str | None = None) -> tuple[float, float, float]:
        """Return ``account``'s (dailyPnL, unrealizedPnL, realizedPnL) on ``today``."""
        with self._lock:
            return self.ledger_for(account).pnl(today)

    def pnl_single(self, con_id: int,
                   account: str | None = None) -> tuple[float, float, float, float, float]:
        """Return ``account``'s (position, dailyPnL, unrealizedPnL, realizedPnL, value) for
        one conId."""
        with self._lock:
            return self.ledger_for(account).pnl_single(con_id)
