"""Loading the bars of a research run once, in the client, through the backtest's source chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.research.tasks import BarSet

__all__ = ["DataConfig", "load_bars"]


@dataclass
class DataConfig:
    """Which bars to load: the same fields and sources as ``python -m examples.backtest``."""

    symbols: list[str] | None = None
    source: str = "auto"  # auto | yahoo | sample | csv | ibkr
    csv_paths: list[Path] | None = None
    start: date | None = None
    end: date | None = None
    use_cache: bool = True
    progress: bool = True
    gateway: GatewayAddress = field(default_factory=GatewayAddress)  # source "ibkr": where from


def load_bars(config: DataConfig) -> BarSet:
    """Return a BarSet of validated frames from bt_ibkr.data.history.load_history.

    Raises ConfigError / DataError exactly as load_history does (the message names the source
    and the input).
    """
    from bt_ibkr.data.history import HistoryRequest, load_history

    history = load_history(HistoryRequest(
        symbols=config.symbols, source=config.source, start=config.start, end=config.end,
        csv_paths=config.csv_paths, use_cache=config.use_cache, progress=config.progress,
        gateway=config.gateway,
    ))
    return BarSet(frames=dict(history.frames), source=history.source, message=history.message)

