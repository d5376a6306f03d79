"""Run a parity check: load bars, run both paths, compare; or replay recorded sessions.

* :func:`load_frames`: the bars of ``symbols`` from a source (the same loader as backtests).
* :func:`run_parity`: both paths over the same frames -> :class:`ParityRun` (report and both
  recordings).
* :func:`replay`: recorded live sessions (:mod:`bt_ibkr.parity.sessions`) through the
  backtest path, compared with what the session did.

Raises ConfigError / DataError for bad input (messages name the input).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from bt_ibkr import redaction
from bt_ibkr.parity.diff import ParityReport, compare
from bt_ibkr.parity.paths import ParityConfig, run_backtest_path, run_ib_path
from bt_ibkr.records.recorder import Recording


@dataclass
class ParityRun:
    """A parity check's ``report`` and the ``backtest`` and ``ib`` recordings."""

    report: ParityReport
    backtest: Recording
    ib: Recording

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON summary (the report's fields)."""
        return self.report.to_dict()


def load_frames(symbols: list[str] | None, source: str = "sample", start: date | None = None,
                end: date | None = None, progress: bool = False,
                csv_paths: list[Path] | None = None) -> dict[str, pd.DataFrame]:
    """Return ``{symbol: frame}`` from ``source`` (see bt_ibkr.data.history.load_history;
    ``csv_paths`` for source csv)."""
    from bt_ibkr.data.history import HistoryRequest, load_history

    result = load_history(HistoryRequest(symbols=symbols, source=source, start=start, end=end,
                                         progress=progress, csv_paths=csv_paths))
    return dict(result.frames)


def run_parity(frames: dict[str, pd.DataFrame], strategy_cls: type | None = None,
               params: dict[str, Any] | None = None, cfg: ParityConfig | None = None,
               sim=None, on_step=None) -> ParityRun:
    """Run ``strategy_cls`` (default RegimeAwareEnsemble) over ``frames`` on both paths and
    compare them (see bt_ibkr.parity.paths for the paths and ``on_step``)."""
    from bt_ibkr.params import resolve_strategy

    strategy_cls = strategy_cls or resolve_strategy()
    params = dict(params or {})
    cfg = cfg or ParityConfig()
    back = run_backtest_path(frames, strategy_cls, params, cfg)
    ib = run_ib_path(frames, strategy_cls, params, cfg, sim=sim, on_step=on_step)
    report = compare(back, ib, cfg.tolerance)
    report.meta.update(strategy=strategy_cls.__name__, params=params,
                       symbols=list(frames), commission_bps=cfg.commission_bps,
                       slippage_bps=cfg.slippage_bps, cash=cfg.cash,
                       partial_fill_qty=cfg.partial_fill_qty)
    return ParityRun(report=report, backtest=back, ib=ib)


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON to ``path`` (parents created, the environment's secrets
    masked: :func:`bt_ibkr.redaction.write_json`); return ``path``."""
    return redaction.write_json(data, path, newline=False)
