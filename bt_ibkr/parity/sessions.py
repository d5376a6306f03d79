"""Session records: what a live/paper Strategy saw and did, on disk, and their replay.

A session directory ``<state>/sessions/<run_id>/`` (``<state>`` is the journal's folder:
``state/`` for real runs, ``state/simulate/`` for ``--simulate``) holds:

* ``meta.json``: run id, mode, run mode, symbols, bar size, the Strategy (``module:Class``)
  and its params, the broker's cash/value when the Strategy started and (``end``) when it
  stopped, with the fills that arrived after its last bar;
* ``bars.jsonl`` (and, past ``part_bytes``, its closed parts ``bars.000001.jsonl.gz`` ...:
  :mod:`bt_ibkr.parity.session_files`): one :class:`~bt_ibkr.parity.recorder.BarRecord` per
  bar the Strategy saw (history backfill and live bars alike: bars, decision, orders, fills,
  position, cash, value, and per feed whether it was LIVE), appended and flushed as each bar
  is decided, so a killed process loses at most the bar being decided.

Readers (:func:`load_session`, :func:`iter_session`, :func:`replay`, the live tearsheet) take
the parts in order; :func:`replay` streams them, holding one chunk of bars at a time.

:func:`replay` feeds a session's recorded bars through the backtest path (BackBroker, the
recorded starting cash and the positions the session adopted from IB) with the same Strategy
and params, delivering them the way the live
feed did (the Strategy is told LIVE at the bar the session went live, so it does not trade on
warm-up bars in the replay either), and compares the two bar by bar. Given a folder of
sessions (``state/sessions``) it replays each one in turn and adds up the differences, so many daily
runs check a whole paper month. Commission and fill prices differ from a real gateway's, so
fills and orders are compared with the tolerance; decisions must match.

Raises ConfigError for a path that holds no session.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.parity.diff import ParityReport, compare
from bt_ibkr.parity.paths import ParityConfig
from bt_ibkr.parity.recorder import BarRecord, ParityRecorder, Recording
from bt_ibkr.parity.session_files import BARS, DEFAULT_PART_BYTES, BarsWriter, iter_records
from bt_ibkr.parity.stream_diff import StreamCompare

META = "meta.json"
__all__ = ["BARS", "META", "SessionRecorder", "SessionWriter", "attach", "combine",
           "find_sessions", "iter_session", "load_session", "read_meta", "recorded_frames",
           "replay", "replay_recording", "replay_session", "session_dir"]


class SessionWriter:
    """Appends each BarRecord to the session's bar file (the recorder's ``on_bar``),
    rotated into gzip'd parts past ``part_bytes`` (:class:`~bt_ibkr.parity.session_files.
    BarsWriter`). Raises OSError when the folder cannot be written, ConfigError when another
    process is writing it."""

    def __init__(self, directory: Path, meta: dict[str, Any],
                 part_bytes: int = DEFAULT_PART_BYTES) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = dict(meta)
        self._bars = BarsWriter(self.dir, part_bytes)
        self._write_meta()

    def _write_meta(self) -> None:
        tmp = self.dir / (META + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2, default=str), encoding="utf-8")
        tmp.replace(self.dir / META)

    def __call__(self, record: BarRecord) -> None:
        self._bars.write(json.dumps(record.to_dict(), default=str))

    def started(self, recorder_meta: dict[str, Any]) -> None:
        """Add what the recorder knows at the Strategy's start (cash, value, class path)."""
        self.meta.update(recorder_meta)
        self._write_meta()

    def close(self) -> None:
        """Close the bar file, compressing its last part when large (idempotent)."""
        self._bars.close()


class SessionRecorder(ParityRecorder):
    """ParityRecorder that writes to a :class:`SessionWriter` (param ``writer``); the bars
    go to disk only (``keep`` False), so a long stream run's memory does not grow with it."""

    params = (("writer", None), ("keep", False))

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


def attach(cerebro: bt.Cerebro, directory: Path, meta: dict[str, Any],
           part_bytes: int = DEFAULT_PART_BYTES) -> Path:
    """Add a SessionRecorder writing to ``directory`` to ``cerebro`` (its bar file rotated
    past ``part_bytes``); return the directory."""
    writer = SessionWriter(directory, meta, part_bytes)
    cerebro.addanalyzer(SessionRecorder, _name="session_record", writer=writer)
    return writer.dir


def read_meta(directory: Path) -> dict[str, Any]:
    """Return a session's ``meta.json`` (with ``session_dir``); ConfigError when it has none."""
    directory = Path(directory)
    meta_path = directory / META
    if not meta_path.is_file():
        raise ConfigError(f"--replay {directory}: no {META} there: not a session record")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--replay {meta_path}: not valid JSON ({exc}); restore it from a "
                          "backup or move the session folder away") from None
    meta["session_dir"] = str(directory)
    return meta


def iter_session(directory: Path) -> Iterator[BarRecord]:
    """Yield the session's BarRecords in order, part by part (a torn line is skipped)."""
    return iter_records(directory)


def load_session(directory: Path) -> Recording:
    """Return the Recording of one session directory, every part in memory (a torn last line
    is skipped). For a long record prefer :func:`iter_session` / :func:`replay_session`."""
    meta = read_meta(directory)
    return Recording(bars=list(iter_records(directory)), meta=meta)


def find_sessions(path: Path) -> list[Path]:
    """Return the session directories at ``path`` (itself, or its children/grandchildren;
    hidden folders, such as one being deleted, are left out)."""
    path = Path(path)
    if (path / META).is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"--replay {path}: no such folder; give a session folder or "
                          "state/sessions")
    found = sorted(p.parent for p in path.glob(f"*/{META}"))
    found += sorted(p.parent for p in path.glob(f"sessions/*/{META}"))
    found = [p for p in found if not p.name.startswith(".")]
    if not found:
        raise ConfigError(f"--replay {path}: no recorded session in it (a session folder "
                          f"holds {META} and {BARS})")
    return found


_EPOCH, _US = datetime(1970, 1, 1), timedelta(microseconds=1)


def _naive_us(text: str) -> int:
    """Microseconds since the epoch of an ISO time's wall clock (an offset dropped, as
    ``tz_localize(None)`` does; recorded times are naive UTC)."""
    dt = datetime.fromisoformat(text).replace(tzinfo=None)
    return (dt - _EPOCH) // _US


def recorded_frames(rec: Recording | Iterable[BarRecord]
                    ) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Return each feed's bars as a frame (index: the feed's bar times, UTC) and the row
    where it went LIVE (len(frame) when it never did). ``rec``: a Recording or any iterable
    of BarRecords (read once, holding only the OHLCV columns)."""
    bars = rec.bars if isinstance(rec, Recording) else rec
    cols: dict[str, list[array]] = {}
    last_dt: dict[str, str] = {}
    live_at: dict[str, int] = {}
    for b in bars:
        for name, ohlcv in b.bars.items():
            if ohlcv is None:
                continue  # the feed had no bar yet
            info = b.feeds.get(name, {})
            dt = info.get("dt") or b.dt
            if last_dt.get(name) == dt:
                continue  # the feed had no new bar at this step
            last_dt[name] = dt
            acc = cols.setdefault(name, [array("q")] + [array("d") for _ in range(5)])
            acc[0].append(_naive_us(dt))
            for col, x in zip(acc[1:], ohlcv, strict=True):
                col.append(x)
            if info.get("live") and name not in live_at:
                live_at[name] = len(acc[0]) - 1
    frames = {}
    for name, acc in cols.items():
        idx = pd.DatetimeIndex(pd.to_datetime(np.frombuffer(acc[0], dtype=np.int64),
                                              unit="us"))
        frames[name] = pd.DataFrame(
            {k: np.array(c, dtype=float) for k, c in zip(
                ("open", "high", "low", "close", "volume"), acc[1:], strict=True)}, index=idx)
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


def _replay_cerebro(meta: dict[str, Any], frames: dict[str, pd.DataFrame],
                    live_at: dict[str, int], cfg: ParityConfig, on_bar=None, keep=True):
    """Return ``(cerebro, strategy_cls, params, cash)``: the recorded Strategy over the
    recorded bars on BackBroker with a ParityRecorder (``on_bar``, ``keep``) named parity."""
    from bt_ibkr.params import resolve_strategy

    strategy_cls = resolve_strategy(meta.get("strategy_path") or meta.get("strategy"))
    params = dict(meta.get("params") or {})
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
    cerebro.addanalyzer(ParityRecorder, _name="parity", on_bar=on_bar, keep=keep)
    return cerebro, strategy_cls, params, cash


def _no_bars(meta: dict[str, Any]) -> ConfigError:
    return ConfigError(f"--replay {meta.get('session_dir')}: the session recorded no bars")


def replay_recording(rec: Recording, cfg: ParityConfig | None = None) -> ParityReport:
    """Run the recorded Strategy over the recorded bars (in memory) with BackBroker; compare.
    Raises ConfigError for a recording without bars."""
    cfg = cfg or ParityConfig()
    meta = rec.meta
    if not rec.bars:
        raise _no_bars(meta)
    frames, live_at = recorded_frames(rec)
    cerebro, strategy_cls, params, cash = _replay_cerebro(meta, frames, live_at, cfg)
    back = cerebro.run()[0].analyzers.parity.get_analysis()
    back.meta.update(path="replay", broker="BackBroker")
    report = compare(back, rec, cfg.tolerance)
    report.meta.update(session=meta.get("session_dir"), run_id=meta.get("run_id"),
                       strategy=strategy_cls.__name__, params=params, start_cash=cash)
    return report


def replay_session(directory: Path, cfg: ParityConfig | None = None) -> ParityReport:
    """:func:`replay_recording` of a session folder, streamed: the bar file is read twice,
    part by part (once for the feeds' OHLCV, once alongside the replay to compare), so memory
    holds the price columns and one chunk of records, not the session's every BarRecord.
    The report is the one ``replay_recording(load_session(directory))`` gives (its ``diffs``
    capped at the first 500). Raises ConfigError for a folder that is not a session or whose
    session recorded no bars."""
    cfg = cfg or ParityConfig()
    meta = read_meta(directory)
    frames, live_at = recorded_frames(iter_records(directory))
    if not frames:
        raise _no_bars(meta)
    recorded = iter_records(directory)
    diff = StreamCompare(cfg.tolerance)
    cerebro, strategy_cls, params, cash = _replay_cerebro(
        meta, frames, live_at, cfg, keep=False,
        on_bar=lambda bar: diff.add(bar, next(recorded, None)))
    back = cerebro.run()[0].analyzers.parity.get_analysis()
    for bar in recorded:  # recorded bars the replay never reached
        diff.add(None, bar)
    back.meta.update(path="replay", broker="BackBroker")
    report = diff.report(back.meta, meta)
    report.meta.update(session=meta.get("session_dir"), run_id=meta.get("run_id"),
                       strategy=strategy_cls.__name__, params=params, start_cash=cash)
    return report


def replay(path: Path, cfg: ParityConfig | None = None) -> ParityReport:
    """Replay every session under ``path`` one after the other (:func:`replay_session`; see
    the module docstring); return the combined report (counts added up,
    ``first_divergence`` the first session's first, with its ``session``)."""
    return combine([replay_session(d, cfg) for d in find_sessions(path)])


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
