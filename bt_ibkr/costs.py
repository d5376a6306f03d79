"""Costs: what trading costs a simulated run, one value object for every place that charges it.

The backtest (:class:`bt_ibkr.backtest_run.BacktestConfig`), sweeps and walk-forwards
(:mod:`bt_ibkr.research`), research tasks and the parity harness (:mod:`bt_ibkr.parity`)
all start from the same cash and charge the same commission and slippage per side, in basis
points of the traded value; :meth:`Costs.validate` holds the one set of rules for them, with
the messages naming the CLI flags. A leaf module: it imports nothing of bt_ibkr but errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bt_ibkr.errors import ConfigError

__all__ = ["Costs", "DEFAULT_CASH", "DEFAULT_COMMISSION_BPS", "DEFAULT_SLIPPAGE_BPS", "MAX_BPS"]

DEFAULT_CASH = 100_000.0
DEFAULT_COMMISSION_BPS = 1.0
DEFAULT_SLIPPAGE_BPS = 2.0
MAX_BPS = 1000.0
"""Commission and slippage must each stay below this many basis points per side."""


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Costs:
    """Starting cash, and commission and slippage per side in basis points of traded value."""

    cash: float = DEFAULT_CASH
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS

    def validate(self) -> None:
        """Return None when every field is usable; raise ConfigError naming the first bad one
        as its CLI flag (``--cash``, ``--commission-bps``, ``--slippage-bps``) and its value."""
        if not _finite(self.cash) or self.cash <= 0:
            raise ConfigError(f"--cash {self.cash}: must be a finite amount > 0, e.g. --cash 100000")
        for flag, bps in (("--commission-bps", self.commission_bps),
                          ("--slippage-bps", self.slippage_bps)):
            if not _finite(bps) or not 0 <= bps < MAX_BPS:
                raise ConfigError(f"{flag} {bps}: must be a finite number of basis points in "
                                  f"[0, {MAX_BPS:g})")

    @classmethod
    def of(cls, config: Any) -> Costs:
        """Return the Costs of any config that carries ``cash``, ``commission_bps`` and
        ``slippage_bps`` fields (backtest, sweep, walk-forward, task, parity)."""
        return cls(config.cash, config.commission_bps, config.slippage_bps)
