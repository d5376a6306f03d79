"""Session records: what a live/paper Strategy saw and did, on disk, and their replay.

A session directory ``<state>/sessions/<run_id>/`` (``<state>`` is the journal's folder:
``state/`` for real runs, ``state/simulate/`` for ``--simulate``) holds:

* ``meta.json``: run id, mode, run mode, symbols, bar size, the Strategy (``module:Class``)
  and its params, the broker's cash/value when the Strategy started and (``end``) when it
  stopped, with the fills that arrived after its last bar;
* ``bars.jsonl``: one :class:`~bt_ibkr.parity.recorder.BarRecord` per bar the Strategy saw
  (history backfill and live bars alike: bars, decision, orders, fills, position, cash,
  value, and per feed whether it was LIVE), appended and flushed as each bar is decided, so a
  killed process loses at most the bar being decided.

:func:`replay` feeds a session's recorded bars through the backtest path (BackBroker, the
recorded starting cash and the positions the session adopted from IB) with the same Strategy
and params, delivering them the way the live
feed did (the Strategy is told LIVE at the bar the session went live, so it does not trade on
warm-up bars in the replay either), and compares the two bar by bar. Given a folder of
sessions (``state/sessions``) it replays each one and adds up the differences, so many daily
runs check a whole paper month. Commission and fill prices differ from a real gateway's, so
fills and orders are compared with the tolerance; decisions must match.

Raises ConfigError for a path that holds no session.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.parity.diff import ParityReport, compare
from bt_ibkr.parity.paths import ParityConfig
from bt_ibkr.parity.recorder import BarRecord, ParityRecorder, Recording

META = "meta.json"
BARS = "bars.jsonl"


class SessionWriter:
    """Appends each BarRecord to ``dir/bars.jsonl`` (the recorder's ``on_bar``)."""

    def __init__(self, directory: Path, meta: dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        self._write_meta()
        self._fh = open(self.dir / BARS, "a", encoding="utf-8")  # noqa: SIM115 - kept open

    def _write_meta(self) -> None:
        tmp = self.dir / (META + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.dir / META)

    def __call__(self, record: BarRecord) -> None:
        self._fh.write(json.dumps(record.to_dict(), default=str) + "\n")
        self._fh.flush()

    def started(self, recorder_meta: dict[str, Any]) -> None:
        """Add what the recorder knows at the Strategy's start (cash, value, class path)."""
        self.meta.update(recorder_meta)
        self._write_meta()

    def close(self) -> None:
        """Close the bar file (idempotent)."""
        if not self._fh.closed:
            self._fh.close()


class SessionRecorder(ParityRecorder):
    """ParityRecorder that writes to a :class:`SessionWriter` (param ``writer``)."""

    params = (("writer", None),)

    def start(self) -> None:
        super().start()
        self.p.on_bar = self.p.writer
        broker = self.strategy.broker
        held = {}
        for d in self.datas:
            pos = broker.getposition(d)
            if pos.size:
                held[self._names[id(d)]] = [pos.size, pos.price]
        self.rec.meta["start_positions"] = held
        self.p.writer.started(self.rec.meta)

    def stop(self) -> None:
        broker = self.strategy.broker
        store = getattr(broker, "store", None)
        account_value = store.get_acc_value() if store is not None else None
        self.p.writer.started({"end": {
            "value": broker.getvalue(), "cash": broker.getcash(),
            "account_value": account_value,
            "positions": {self._names[id(d)]: broker.getposition(d).size for d in self.datas},
            "fills_after_last_bar": self._fills}})
        self.p.writer.close()


def session_dir(state_dir: Path, run_id: str) -> Path:
    """Return ``state_dir/sessions/<run_id>`` (the id made safe as a folder name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(run_id)) or "run"
    return Path(state_dir) / "sessions" / safe


def attach(cerebro: bt.Cerebro, directory: Path, meta: dict[str, Any]) -> Path:
    """Add a SessionRecorder writing to ``directory`` to ``cerebro``; return the directory."""
    writer = SessionWriter(directory, meta)
    cerebro.addanalyzer(SessionRecorder, _name="session_record", writer=writer)
    return writer.dir


def load_session(directory: Path) -> Recording:
    """Return the Recording of one session directory (a torn last line is skipped)."""
    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.is_file():
        raise ConfigError(f"--replay {directory}: no {META} there: not a session record")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    bars: list[BarRecord] = []
    path = directory / BARS
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                bars.append(BarRecord(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue  # a line cut by a killed process
    meta["session_dir"] = str(directory)
    return Recording(bars=bars, meta=meta)


def find_sessions(path: Path) -> list[Path]:
    """Return the session directories at ``path`` (itself, or its children/grandchildren)."""
    path = Path(path)
    if (path / META).is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"--replay {path}: no such folder; give a session folder or "
                          "state/sessions")
    found = sorted(p.parent for p in path.glob(f"*/{META}"))
    found += sorted(p.parent for p in path.glob(f"sessions/*/{META}"))
    if not found:
        raise ConfigError(f"--replay {path}: no recorded session in it (a session folder "
                          f"holds {META} and {BARS})")
    return found


def recorded_frames(rec: Recording) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Return each feed's bars as a frame (index: the feed's bar times, UTC) and the row
    where it went LIVE (len(frame) when it never did)."""
    rows: dict[str, dict[str, list]] = {}
    live_at: dict[str, int] = {}
    for b in rec.bars:
        for name, ohlcv in b.bars.items():
            if ohlcv is None:
                continue  # the feed had no bar yet
            info = b.feeds.get(name, {})
            dt = info.get("dt") or b.dt
            acc = rows.setdefault(name, {"dt": [], "rows": []})
            if acc["dt"] and acc["dt"][-1] == dt:
                continue  # the feed had no new bar at this step
            acc["dt"].append(dt)
            acc["rows"].append(ohlcv)
            if info.get("live") and name not in live_at:
                live_at[name] = len(acc["rows"]) - 1
    frames = {}
    for name, acc in rows.items():
        idx = pd.DatetimeIndex(pd.to_datetime(acc["dt"])).tz_localize(None)
        frames[name] = pd.DataFrame(acc["rows"], index=idx,
                                    columns=["open", "high", "low", "close", "volume"])
        live_at.setdefault(name, len(frames[name]))
    return frames, live_at


class _AdoptPositions(bt.Analyzer):
    """Gives BackBroker the positions the session started with (param ``held``:
    ``{feed name: [size, price]}``), as IBBroker adopted them from IB."""

    params = (("held", None),)

    def start(self) -> None:
        broker = self.strategy.broker
        for d in self.datas:
            size_price = (self.p.held or {}).get(d._name)
            if size_price:
                broker.positions[d].set(*size_price)


class ReplayFeed(bt.feeds.PandasData):
    """A recorded feed replayed as the live feed delivered it: a live feed (``islive``) that
    reports DELAYED while it replays history and LIVE at bar ``live_at``."""

    params = (("live_at", 0),)

    def islive(self) -> bool:
        return True

    def start(self) -> None:
        super().start()
        self._row = 0
        if self.p.live_at > 0:
            self.put_notification(self.DELAYED)

    def _load(self):
        if self._row == self.p.live_at:
            self.put_notification(self.LIVE)
        ok = super()._load()
        if ok:
            self._row += 1
        return ok


def replay_recording(rec: Recording, cfg: ParityConfig | None = None) -> ParityReport:
    """Run the recorded Strategy over the recorded bars with BackBroker; compare."""
    from bt_ibkr.params import resolve_strategy

    cfg = cfg or ParityConfig()
    meta = rec.meta
    if not rec.bars:
        raise ConfigError(f"--replay {meta.get('session_dir')}: the session recorded no bars")
    strategy_cls = resolve_strategy(meta.get("strategy_path") or meta.get("strategy"))
    params = dict(meta.get("params") or {})
    frames, live_at = recorded_frames(rec)
    cash = float(meta.get("start_cash") or cfg.cash)
    cerebro = bt.Cerebro(stdstats=False)
    broker = cerebro.broker
    broker.setcash(cash)
    broker.setcommission(commission=cfg.commission_bps / 10_000.0)
    broker.set_slippage_perc(cfg.slippage_bps / 10_000.0, slip_open=True, slip_limit=True,
                             slip_match=True, slip_out=True)
    for name, frame in frames.items():
        cerebro.adddata(ReplayFeed(dataname=frame, live_at=live_at[name]), name=name)
    cerebro.addstrategy(strategy_cls, **params)
    held = meta.get("start_positions") or {}
    if held:
        cerebro.addanalyzer(_AdoptPositions, held=held)  # before the recorder reads them
    cerebro.addanalyzer(ParityRecorder, _name="parity")
    back = cerebro.run()[0].analyzers.parity.get_analysis()
    back.meta.update(path="replay", broker="BackBroker")
    report = compare(back, rec, cfg.tolerance)
    report.meta.update(session=meta.get("session_dir"), run_id=meta.get("run_id"),
                       strategy=strategy_cls.__name__, params=params, start_cash=cash)
    return report


def replay(path: Path, cfg: ParityConfig | None = None) -> ParityReport:
    """Replay every session under ``path`` (see the module docstring); return the combined
    report (counts added up, ``first_divergence`` the first session's first, with its
    ``session``)."""
    reports = [replay_recording(load_session(d), cfg) for d in find_sessions(path)]
    return combine(reports)


def combine(reports: list[ParityReport]) -> ParityReport:
    """Return one report adding up ``reports`` (one per session)."""
    first = None
    diffs: list[dict[str, Any]] = []
    for r in reports:
        session = r.meta.get("session")
        if first is None and r.first_divergence is not None:
            first = dict(r.first_divergence, session=session)
        diffs += [dict(d, session=session) for d in r.diffs]

    def total(name: str) -> int:
        return sum(getattr(r, name) for r in reports)

    return ParityReport(
        bars=total("bars"), bars_backtest=total("bars_backtest"), bars_ib=total("bars_ib"),
        orders_backtest=total("orders_backtest"), orders_ib=total("orders_ib"),
        fills_backtest=total("fills_backtest"), fills_ib=total("fills_ib"),
        decision_diffs=total("decision_diffs"), order_diffs=total("order_diffs"),
        fill_diffs=total("fill_diffs"), position_diffs=total("position_diffs"),
        max_value_diff=max((r.max_value_diff for r in reports), default=0.0),
        max_cash_diff=max((r.max_cash_diff for r in reports), default=0.0),
        tolerance=reports[0].tolerance if reports else 0.0, first_divergence=first,
        diffs=diffs, meta={"sessions": [r.meta for r in reports]})
