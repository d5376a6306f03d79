"""AccountState: the account values and positions a connection's client reports, kept current."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["AccountState"]


class AccountState:
    """The account values and positions the gateway reported (thread-safe reads).

    ``values`` maps ``(account, tag, currency)`` to IB's text value; ``positions`` maps conId
    to ``(size, avgCost)`` for ``account`` ("" = every account).
    """

    def __init__(self, account: str = "") -> None:
        self.account = account
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, str], str] = {}
        self._positions: dict[int, tuple[float, float]] = {}
        self._contracts: dict[int, Any] = {}

    def reset(self, values: Iterable[Any], positions: Iterable[Any]) -> None:
        """Replace everything with the client's ``accountValues()`` and ``positions()``."""
        with self._lock:
            self._values = {(av.account, av.tag, av.currency): av.value for av in values}
            self._positions, self._contracts = {}, {}
        for pos in positions:
            self.on_position(pos)

    def on_value(self, av: Any) -> None:
        """Apply one ``AccountValue`` update."""
        with self._lock:
            self._values[(av.account, av.tag, av.currency)] = av.value

    def on_position(self, pos: Any) -> None:
        """Apply one ``Position`` update (other accounts are ignored when one is set)."""
        if self.account and pos.account != self.account:
            return
        with self._lock:
            self._positions[pos.contract.conId] = (float(pos.position), float(pos.avgCost))
            self._contracts[pos.contract.conId] = (pos.account, pos.contract)

    def number(self, tags: tuple[str, ...], account: str | None = None) -> float:
        """Return the sum over accounts of the first of ``tags`` found (BASE, USD, then no
        currency); 0.0 before the first download."""
        with self._lock:
            items = dict(self._values)
        accounts = [account] if account else (
            [self.account] if self.account else sorted({a for a, _, _ in items}))
        total = 0.0
        for acc in accounts:
            for tag in tags:
                for cur in ("BASE", "USD", ""):
                    value = items.get((acc, tag, cur))
                    if value not in (None, ""):
                        try:
                            total += float(value)
                        except ValueError:
                            continue
                        break
                else:
                    continue
                break
        return total

    def values(self, account: str | None = None) -> dict:
        """Return every account value as ``{(account, tag, currency): value}`` (a copy)."""
        with self._lock:
            items = dict(self._values)
        return {k: v for k, v in items.items() if k[0] == account} if account else items

    def positions(self) -> dict[int, tuple[float, float]]:
        """Return the positions as ``{conId: (size, avgCost)}`` (a copy)."""
        with self._lock:
            return dict(self._positions)

    def holdings(self, account: str | None = None) -> list[tuple[Any, float]]:
        """Return ``[(contract, size)]`` of non-zero positions (of ``account`` when given)."""
        with self._lock:
            rows = [(self._contracts[c], p[0]) for c, p in self._positions.items()]
        return [(contract, size) for (acc, contract), size in rows
                if size and (not account or acc == account)]
