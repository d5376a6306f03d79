"""Which account a gateway connection is logged into, and whether that is still the run's.

IB account ids tell paper from live: a paper (simulated) account's id starts with ``D``
(``DU1234567`` for an individual or client paper account, ``DF1234567`` for an advisor's paper
master); live ids start with ``U`` or ``F``. A paper login lists only paper accounts and a live
login only live ones.

:func:`account_guard` is the check a store runs after every reconnect
(:meth:`~bt_ibkr.ib.store.IBStore.expect_account`): a gateway that comes back on the same
port can be logged into another account, or a live one in a paper run.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["PAPER_ACCOUNT_PREFIXES", "account_guard", "account_kind", "is_paper_account"]

PAPER_ACCOUNT_PREFIXES = ("DU", "DF")
"""Account-id prefixes of IB paper accounts: DU (individual/client), DF (advisor master)."""


def is_paper_account(account: str) -> bool:
    """Return True when ``account`` is an IB paper account id (``DU...`` or ``DF...``)."""
    return account.strip().upper().startswith(PAPER_ACCOUNT_PREFIXES)


def account_kind(account: str) -> str:
    """Return ``"paper"`` or ``"live"`` for an account id."""
    return "paper" if is_paper_account(account) else "live"


def account_guard(account: str, mode: str) -> Callable[[list[str]], str | None]:
    """Return the check of a reconnected connection's managed accounts: None when ``account`` is
    still managed and every managed account is of ``mode``'s kind ("paper" or "live"), else
    the reason, naming the accounts now managed and the run's."""
    expected = account.strip().upper()

    def check(managed: list[str]) -> str | None:
        now = [a.strip() for a in managed if a and a.strip()]
        shown = ", ".join(f"{a} ({account_kind(a)})" for a in now) or "no account"
        wrong_kind = [a for a in now if account_kind(a) != mode]
        if expected not in (a.upper() for a in now) or wrong_kind:
            return (f"logged into {shown}, not {account} ({mode}) that this run's journal "
                    "trades: nothing was sent on that connection and the run stops; log the "
                    f"gateway back into {account}, then run again")
        return None

    return check
