"""Session records: what a live/paper Strategy saw and did, on disk.

A session directory ``<state>/sessions/<run_id>/`` (``<state>`` is the journal's folder:
``state/`` for real runs, ``state/simulate/`` for ``--simulate``) holds:

* ``meta.json``: run id, the journal whose run it is (``journal``: ``{"path": ...}``,
  :mod:`bt_ibkr.records.ownership`), mode, run mode, symbols, bar size, the Strategy
  (``module:Class``) and its params, the broker's cash/value when the Strategy started and
  (``end``) when it stopped, with the fills that arrived after its last bar;
* ``bars.jsonl`` (and, past ``part_bytes``, its closed parts ``bars.000001.jsonl.gz`` ...:
  :mod:`bt_ibkr.records.files`): one :class:`~bt_ibkr.records.recorder.BarRecord` per
  bar the Strategy saw (history backfill and live bars alike: bars, decision, orders, fills,
  position, cash, value, and per feed whether it was LIVE), appended and flushed as each bar
  is decided, so a killed process loses at most the bar being decided.

The live runner writes them (:func:`attach`); readers (:func:`load_session`,
:func:`iter_session`, :func:`recorded_frames`, the live tearsheet and
:func:`bt_ibkr.parity.sessions.replay`) take the parts in order.

A record that cannot be written raises :class:`~bt_ibkr.errors.RecordsError` naming the file
(the live run then stops, see :mod:`bt_ibkr.live.runner`). Readers raise ConfigError for a path
that holds no session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from array import array
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import backtrader as bt
import numpy as np
import pandas as pd

from bt_ibkr.errors import ConfigError, RecordsError
from bt_ibkr.records.files import (
    BARS,
    DEFAULT_PART_BYTES,
    BarsWriter,
    iter_lines,
    iter_records,
    records_error,
)
from bt_ibkr.records.ownership import folder_name
from bt_ibkr.records.recorder import BarRecord, ParityRecorder, Recording

META = "meta.json"
__all__ = ["BARS", "META", "SessionRecorder", "SessionWriter", "attach", "find_sessions",
           "iter_session", "load_session", "read_meta", "recorded_frames", "session_dir",
           "sessions_root"]


REPLAYED_META = ("start_cash", "params", "start_positions", "strategy_path", "strategy")
"""The meta.json fields a replay uses: covered by the record's digest."""


def meta_digest(meta: dict[str, Any]) -> str:
    """Return the sha256 of the meta fields a replay uses (:data:`REPLAYED_META`)."""
    picked = {k: meta.get(k) for k in REPLAYED_META}
    return hashlib.sha256(json.dumps(picked, sort_keys=True, default=str).encode()).hexdigest()


def record_digest(directory: Path) -> dict[str, Any]:
    """Return the digest of a record on disk, computed as :meth:`SessionWriter.digest` is."""
    sha = hashlib.sha256()
    n = 0
    for line in iter_lines(directory):
        sha.update(line.rstrip("\n").encode("utf-8") + b"\n")
        n += 1
    return {"bars": n, "sha256": sha.hexdigest(), "meta_sha256": meta_digest(read_meta(directory))}


class SessionWriter:
    """Appends each BarRecord to the session's bar file (the recorder's ``on_bar``),
    rotated into gzip'd parts past ``part_bytes`` (:class:`~bt_ibkr.records.files.
    BarsWriter`), and keeps its ``meta.json``. Raises :class:`~bt_ibkr.errors.RecordsError`
    (naming the file and what to do) when the folder, the bar file or the meta cannot be
    written, ConfigError when another process is writing it."""

    def __init__(self, directory: Path, meta: dict[str, Any],
                 part_bytes: int = DEFAULT_PART_BYTES) -> None:
        self.dir = Path(directory)
        self.meta = dict(meta)
        self._sha = hashlib.sha256()  # of every line written: the record's digest
        self.bars_written = 0
        self._bars = BarsWriter(self.dir, part_bytes)  # creates the folder
        try:
            self._write_meta()
        except RecordsError:
            self._bars.abort()
            raise

    def _write_meta(self) -> None:
        tmp = self.dir / (META + ".tmp")
        try:
            tmp.write_text(json.dumps(self.meta, indent=2, default=str), encoding="utf-8")
            tmp.replace(self.dir / META)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise records_error(exc, self.dir / META, "write it") from exc

    def __call__(self, record: BarRecord) -> None:
        line = json.dumps(record.to_dict(), default=str)
        self._bars.write(line)
        self._sha.update(line.encode("utf-8") + b"\n")
        self.bars_written += 1

    def digest(self) -> dict[str, Any]:
        """Return the record's digest as kept in the journal (``record_digest`` events):
        the sha256 of its bar lines, their count, and the sha256 of the meta fields a replay
        uses (:func:`meta_digest`). A record altered afterwards no longer matches it."""
        return {"run_id": self.meta.get("run_id"), "bars": self.bars_written,
                "sha256": self._sha.hexdigest(), "meta_sha256": meta_digest(self.meta)}

    def started(self, recorder_meta: dict[str, Any]) -> None:
        """Add what the recorder knows at the Strategy's start (cash, value, class path)."""
        self.meta.update(recorder_meta)
        self._write_meta()

    def close(self) -> None:
        """Close the bar file, compressing its last part when large (idempotent); raises
        RecordsError for a failure not raised yet (the lock is released all the same)."""
        self._bars.close()

    def abort(self) -> None:
        """Close the bar file without sealing it or raising (a run stopping on an error);
        idempotent."""
        self._bars.abort()


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
        try:
            self.p.writer.started({"end": {
                "value": broker.getvalue(), "cash": broker.getcash(),
                "account_value": account_value,
                "positions": {self._names[id(d)]: broker.getposition(d).size
                              for d in self.datas},
                "fills_after_last_bar": self._fills}})
        finally:
            self.p.writer.close()


def sessions_root(state_dir: Path) -> Path:
    """Return ``state_dir/sessions``: the folder of every session record of that state."""
    return Path(state_dir) / "sessions"


def session_dir(state_dir: Path, run_id: str) -> Path:
    """Return ``state_dir/sessions/<run_id>`` (the id made safe as a folder name)."""
    return sessions_root(state_dir) / folder_name(run_id)


def attach(cerebro: bt.Cerebro, directory: Path, meta: dict[str, Any],
           part_bytes: int = DEFAULT_PART_BYTES) -> SessionWriter:
    """Add a SessionRecorder writing to ``directory`` to ``cerebro`` (its bar file rotated
    past ``part_bytes``); return its :class:`SessionWriter` (``dir``: the folder; ``abort()``
    when the run stops on an error). Raises RecordsError when the record cannot be started."""
    writer = SessionWriter(directory, meta, part_bytes)
    cerebro.addanalyzer(SessionRecorder, _name="session_record", writer=writer)
    return writer


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
    if not isinstance(meta, dict):
        raise ConfigError(f"--replay {meta_path}: expected a JSON object, got "
                          f"{type(meta).__name__}; restore it from a backup or move the session "
                          "folder away")
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
                          "state/<ACCOUNT>/sessions")
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


