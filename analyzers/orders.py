"""OrderLog: every completed or partially filled execution, for summaries and parity checks."""

from __future__ import annotations

from dataclasses import dataclass

import backtrader as bt


@dataclass(frozen=True)
class Fill:
    """One execution as backtrader reported it (size > 0 buys, < 0 sells)."""

    dt: str
    symbol: str
    side: str
    size: float
    price: float
    commission: float
    status: str
    ref: int


class OrderLog(bt.Analyzer):
    """Record every execution (one Fill per execution bit) and every rejected order.

    ``get_analysis()`` returns ``{"fills": [Fill...], "rejected": [(dt, symbol, status)...]}``.
    """

    def start(self) -> None:
        self.fills: list[Fill] = []
        self.rejected: list[tuple[str, str, str]] = []

    def notify_order(self, order: bt.Order) -> None:
        name = order.data._name or f"data{next(i for i, d in enumerate(self.strategy.datas) if d is order.data)}"
        # Each notification carries only the execution bits that are new since the last one,
        # so partial fills are recorded once each, never as cumulative totals.
        for bit in order.executed.iterpending():
            if not bit.size:
                continue
            self.fills.append(
                Fill(
                    dt=bt.num2date(bit.dt).isoformat(),
                    symbol=name,
                    side="BUY" if bit.size > 0 else "SELL",
                    size=float(bit.size),
                    price=float(bit.price),
                    commission=float(bit.comm),
                    status=order.getstatusname(),
                    ref=order.ref,
                )
            )
        if order.status in (order.Rejected, order.Margin):
            dt = self.strategy.datetime.datetime(0).isoformat() if len(self.strategy) else ""
            self.rejected.append((dt, name, order.getstatusname()))

    def get_analysis(self) -> dict:
        return {"fills": self.fills, "rejected": self.rejected}
