"""Replay of session records (:mod:`bt_ibkr.records.sessions`) through the backtest path.

:func:`replay` feeds a session's recorded bars through the backtest path (BackBroker, the
recorded starting cash and the positions the session adopted from IB) with the same Strategy
and params, delivering them the way the live feed did (the Strategy is told LIVE at the bar
the session went live, so it does not trade on warm-up bars in the replay either), and
compares the two bar by bar; it streams the record's parts, holding one chunk of bars at a
time. Given a folder of sessions (``state/sessions``) it replays each one in turn and adds up
the differences, so many daily runs check a whole paper month. Commission and fill prices
differ from a real gateway's, so fills and orders are compared with the tolerance; decisions
must match.

The record names (:func:`load_session`, :func:`iter_session`, :func:`recorded_frames` ...)
are re-exported here from :mod:`bt_ibkr.records.sessions`.

Raises ConfigError for a path that holds no session.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.parity.diff import ParityReport, compare
from bt_ibkr.parity.paths import ParityConfig
from bt_ibkr.parity.stream_diff import StreamCompare
from bt_ibkr.parity.timeline import merge as merge_timelines
from bt_ibkr.records.files import check_record, iter_records
from bt_ibkr.records.recorder import ParityRecorder, Recording
from bt_ibkr.records.sessions import (
    BARS,
    META,
    SessionRecorder,
    SessionWriter,
    attach,
    find_sessions,
    iter_session,
    load_session,
    read_meta,
    recorded_frames,
    session_dir,
)

__all__ = ["BARS", "META", "SessionRecorder", "SessionWriter", "attach", "combine",
           "find_sessions", "iter_session", "load_session", "read_meta", "recorded_frames",
           "replay", "replay_recording", "replay_session", "session_dir"]


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


def check_meta(meta: Any, where: str) -> dict[str, Any]:
    """Return the session's ``meta.json`` after checking what the replay uses: an object, a
    known Strategy with params of the right type, a finite ``start_cash`` > 0, and
    ``start_positions`` a mapping of symbol to [size, price] (finite numbers).

    Raises:
        ConfigError: one line naming the record, the field and the fix.
    """
    from bt_ibkr.params import check_param_values, resolve_strategy

    def bad(field: str, why: str) -> ConfigError:
        return ConfigError(f"--replay {where}: meta.json {field}: {why}; restore the record "
                           "from a backup or move it out of the folder")

    if not isinstance(meta, dict):
        raise bad("(top level)", f"expected a JSON object, got {type(meta).__name__}")
    if "start_cash" in meta and meta["start_cash"] is not None:
        try:
            cash = float(meta["start_cash"])
        except (TypeError, ValueError):
            raise bad("start_cash", f"{meta['start_cash']!r} is not a number") from None
        if not math.isfinite(cash) or cash <= 0:
            raise bad("start_cash", f"{meta['start_cash']!r} is not a finite amount > 0")
    params = meta.get("params") or {}
    if not isinstance(params, dict):
        raise bad("params", f"expected an object of strategy params, got {params!r}")
    try:
        strategy_cls = resolve_strategy(meta.get("strategy_path") or meta.get("strategy"))
        known = set(strategy_cls.params._getkeys())
        unknown = sorted(set(params) - known)
        if unknown:
            raise bad("params", f"{unknown} are not params of {strategy_cls.__name__}")
        check_param_values(strategy_cls, params, "params")
    except ConfigError as exc:
        if str(exc).startswith("--replay"):
            raise
        raise bad("strategy/params", str(exc)) from None
    held = meta.get("start_positions") or {}
    if not isinstance(held, dict):
        raise bad("start_positions", f"expected an object of symbol: [size, price], got {held!r}")
    for sym, value in held.items():
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                      and math.isfinite(v) for v in value))
        if not ok:
            raise bad(f"start_positions.{sym}", f"expected [size, price] numbers, got {value!r}")
    return meta


def _replay_cerebro(meta: dict[str, Any], frames: dict[str, pd.DataFrame],
                    live_at: dict[str, int], cfg: ParityConfig, on_bar=None, keep=True):
    """Return ``(cerebro, strategy_cls, params, cash)``: the recorded Strategy over the
    recorded bars on BackBroker with a ParityRecorder (``on_bar``, ``keep``) named parity."""
    from bt_ibkr.params import resolve_strategy

    strategy_cls = resolve_strategy(meta.get("strategy_path") or meta.get("strategy"))
    params = dict(meta.get("params") or {})
    cash = float(meta.get("start_cash") or cfg.cash)
    from bt_ibkr.backtest_broker import BacktestBroker

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = broker = BacktestBroker()  # BackBroker + the named order options
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
    meta = check_meta(read_meta(directory), str(directory))
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


def replay(path: Path, cfg: ParityConfig | None = None,
           note=lambda text: None, journal: Path | None = None) -> ParityReport:
    """Replay every session under ``path`` one after the other (:func:`replay_session`; see
    the module docstring); return the combined report (counts added up,
    ``first_divergence`` the first session's first, with its ``session``). In a folder, a
    record without bars (a run that failed before its first bar) is skipped and ``note``d;
    a record whose meta.json is unusable stops the replay (ConfigError naming it). Each
    record is checked against the digest its run kept in the journal (``journal``, else the
    journal beside the sessions folder): ``meta["record"]`` of its report says "verified",
    "altered: ..." or "unverified: ..."."""
    found = find_sessions(path)
    digests = journal_digests(path, journal)
    reports = []
    for d in found:
        try:
            for text in check_record(d):
                note(text)
            rep = replay_session(d, cfg)
            rep.meta["record"] = verify_record(d, digests)
            reports.append(rep)
        except ConfigError as exc:
            if len(found) > 1 and "recorded no bars" in str(exc):
                note(f"skipped {d}: the session recorded no bars (a run that stopped before "
                     "its first bar)")
                continue
            raise
    if not reports:
        raise ConfigError(f"--replay {path}: no session with bars to replay")
    return combine(reports)


def journal_digests(path: Path, journal: Path | None = None) -> dict[str, dict[str, Any]] | None:
    """Return ``{run_id: digest}`` from the journal of the sessions at ``path`` (``journal``,
    else ``journal.sqlite`` beside the sessions folder), None when there is no journal."""
    from bt_ibkr.live.journal import Journal

    path = Path(path)
    candidates = [Path(journal)] if journal else [
        p / "journal.sqlite" for p in (path.parent, path.parent.parent, path)]
    for candidate in candidates:
        if candidate.is_file():
            try:
                with Journal(candidate) as j:
                    return {e["run_id"]: e["detail"] for e in j.events("record_digest")
                            if e["run_id"]}
            except Exception:  # noqa: BLE001 - not a journal: the records stay unverified
                return None
    return None


def verify_record(directory: Path, digests: dict[str, dict[str, Any]] | None) -> str:
    """Return "verified", "altered: <what>" or "unverified: <why>" for one record."""
    from bt_ibkr.records.sessions import record_digest

    if digests is None:
        return "unverified: no journal beside the records (pass --journal)"
    run_id = read_meta(directory).get("run_id")
    kept = digests.get(run_id)
    if kept is None:
        return "unverified: its run kept no digest (killed before its end?)"
    now = record_digest(directory)
    if now["meta_sha256"] != kept.get("meta_sha256"):
        return f"altered: {directory / META} differs from what the run wrote"
    if (now["bars"], now["sha256"]) != (kept.get("bars"), kept.get("sha256")):
        return (f"altered: the bars of {directory} differ from what the run wrote "
                f"({now['bars']} lines now, {kept.get('bars')} written)")
    return "verified"


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
        diffs=diffs, meta={"sessions": [r.meta for r in reports]},
        timeline=merge_timelines([r.timeline for r in reports]))
