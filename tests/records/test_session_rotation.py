"""Session records that do not grow without bound: the bar file rotated into gzip'd parts
(crash-safe), read back in order and stream-wise, and retention of old records.

Seeded synthetic BarRecords where no gateway is needed; a backtest recorded with
SessionRecorder over the real S&P 500 sample for a replay across parts.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import textwrap
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import backtrader as bt
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.parity.diff import compare
from bt_ibkr.parity.sessions import (
    ReplayFeed,
    SessionWriter,
    attach,
    find_sessions,
    load_session,
    recorded_frames,
    replay_recording,
    replay_session,
)
from bt_ibkr.parity.stream_diff import StreamCompare
from bt_ibkr.records import files as sf
from bt_ibkr.records.ownership import JournalRecords
from bt_ibkr.records.recorder import BarRecord, Recording
from bt_ibkr.records.retention import expire_sessions, last_written, maintain_sessions
from bt_ibkr.records.tearsheet import session_equity
from strategies import RegimeAwareEnsemble

NOW = 1_750_000_000.0  # the clock retention is judged against (epoch seconds)
DAY = 86_400.0


def journal_of(tmp_path: Path, *run_ids: str) -> JournalRecords:
    """The claim of a journal in ``tmp_path`` whose runs are ``run_ids`` (the sessions
    written by :func:`write_session` are named after their run)."""
    return JournalRecords.of(tmp_path / "journal.sqlite", run_ids)


def synthetic(n: int, seed: int = 7, symbols=("AAA", "BBB"), warm: int = 20,
              start: datetime = datetime(2024, 1, 2, 14, 30)) -> list[BarRecord]:
    """``n`` five-second bars of a seeded random walk, LIVE from bar ``warm``, an order every
    50th bar."""
    rng = random.Random(seed)
    px = {s: 100.0 + 10 * k for k, s in enumerate(symbols)}
    value = 1_000_000.0
    out = []
    for i in range(n):
        dt = start + timedelta(seconds=5 * i)
        bars, feeds = {}, {}
        for s in symbols:
            o = px[s]
            c = px[s] = round(o * (1 + rng.gauss(0, 5e-4)), 6)
            bars[s] = [o, max(o, c), min(o, c), c, float(rng.randint(100, 5000))]
            feeds[s] = {"dt": dt.isoformat(), "live": i >= warm}
        value = round(value * (1 + rng.gauss(0, 1e-4)), 6)
        orders = ([{"data": symbols[0], "ref": i, "side": "BUY", "size": 10.0,
                    "type": "Market", "price": None}] if i % 50 == 49 else [])
        out.append(BarRecord(
            i=i, dt=dt.isoformat(), bars=bars,
            decision={"intents": [[o["data"], "BUY", "Market"] for o in orders]},
            orders=orders, fills=[], position={s: 0.0 for s in symbols}, cash=value,
            value=value, feeds=feeds))
    return out


def write_session(directory: Path, records, part_bytes: int, meta=None) -> Path:
    w = SessionWriter(directory, dict(meta or {"run_id": directory.name,
                                               "start_value": 1_000_000.0}), part_bytes)
    for r in records:
        w(r)
    w.close()
    return directory


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def split_active(directory: Path, k: int) -> None:
    """Make the first ``k`` lines of the active part a closed plain part 1 (a part rotated
    but not compressed yet)."""
    lines = (directory / "bars.jsonl").read_text().splitlines(keepends=True)
    sf.part_path(directory, 1).write_text("".join(lines[:k]))
    (directory / "bars.jsonl").write_text("".join(lines[k:]))


# ------------------------------------------------------------------------------ rotation
@pytest.mark.parametrize("lines_per_limit, expect", [(3.0, 3), (2.99, 3), (3.01, 4)])
def test_rotation_closes_a_part_at_the_first_line_that_reaches_the_limit(
        tmp_path, lines_per_limit, expect):
    line = "x" * 99  # 100 bytes with its newline
    w = sf.BarsWriter(tmp_path, part_bytes=int(100 * lines_per_limit), background=False)
    for k in range(10):
        w.write(f"{k}" + line[1:])
    # closed parts hold `expect` lines each, all gzip'd; the rest is the plain active part
    full = 10 // expect
    assert names(tmp_path) == sorted([".lock", "bars.jsonl"]
                                     + [f"bars.{n:06d}.jsonl.gz" for n in range(1, full + 1)])
    for n in range(1, full + 1):
        with gzip.open(sf.part_path(tmp_path, n, gz=True), "rt") as fh:
            assert [x[0] for x in fh] == [str(k) for k in range((n - 1) * expect, n * expect)]
    assert [x[0] for x in sf.iter_lines(tmp_path)] == [str(k) for k in range(10)]
    w.close()  # the active part is compressed too when it holds half a part or more
    left = 100 * (10 - full * expect)
    assert (tmp_path / "bars.jsonl").is_file() == (left < w.part_bytes // 2)
    assert ".lock" not in names(tmp_path)
    assert [x[0] for x in sf.iter_lines(tmp_path)] == [str(k) for k in range(10)]


def test_a_large_last_part_is_compressed_on_close_and_the_background_job_finishes(tmp_path):
    recs = synthetic(400)
    total = sum(len(json.dumps(r.to_dict())) + 1 for r in recs)
    write_session(tmp_path / "s", recs, part_bytes=int(total / 3.7))  # 0.7 part left over
    files = names(tmp_path / "s")
    assert "bars.jsonl" not in files and ".lock" not in files  # sealed: all parts gzip'd
    assert [f for f in files if f.startswith("bars.")] == [
        f"bars.{n:06d}.jsonl.gz" for n in range(1, 5)]
    assert load_session(tmp_path / "s").bars == recs


def test_reading_takes_parts_in_numeric_order_plain_or_gzip_then_the_active_part(tmp_path):
    def put(name: str, ks: range) -> None:
        data = "".join(json.dumps({"k": k}) + "\n" for k in ks).encode()
        path = tmp_path / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)

    put("bars.jsonl", range(40, 45))  # active, read last
    put("bars.1000000.jsonl.gz", range(30, 40))  # sorts before 999999 as text, not as number
    put("bars.999999.jsonl", range(20, 30))  # a closed part not compressed yet
    put("bars.000010.jsonl.gz", range(10, 20))
    put("bars.000002.jsonl.gz", range(0, 10))
    put(".bars.000002.jsonl.gz.123.tmp", range(100, 200))  # an unfinished compression
    got = [json.loads(x)["k"] for x in sf.iter_lines(tmp_path)]
    assert got == list(range(45))


# ------------------------------------------------------------------------------ crashes
def test_a_torn_last_line_is_skipped_and_a_writer_reopening_the_folder_ends_it(tmp_path):
    recs = synthetic(30)
    d = write_session(tmp_path / "s", recs[:20], part_bytes=10**9)
    full = json.dumps(recs[20].to_dict())
    with open(d / "bars.jsonl", "a") as fh:
        fh.write(full[: len(full) // 2])  # killed mid-line
    assert load_session(d).bars == recs[:20]
    write_session(d, recs[21:], part_bytes=3000)  # the same folder again, rotating now
    assert load_session(d).bars == recs[:20] + recs[21:]
    assert any(n.endswith(".gz") for n in names(d))


def test_killed_between_the_gzip_and_removing_the_plain_part_nothing_counts_twice(
        tmp_path, monkeypatch):
    recs = synthetic(120)
    d = tmp_path / "sessions" / "s"
    write_session(d, recs, part_bytes=10**9)
    split_active(d, 100)  # a closed part and an active one after it

    class Killed(BaseException):
        pass

    real_unlink = os.unlink

    def kill_at_unlink(path, *a, **k):
        if str(path).endswith(".jsonl"):
            raise Killed  # the process dies here: .gz renamed into place, plain part left
        return real_unlink(path, *a, **k)

    monkeypatch.setattr(sf.os, "unlink", kill_at_unlink)
    with pytest.raises(Killed):
        sf.compress_part(sf.part_path(d, 1))
    monkeypatch.undo()
    assert {"bars.000001.jsonl", "bars.000001.jsonl.gz", "bars.jsonl"} <= set(names(d))
    assert load_session(d).bars == recs  # each bar once
    assert session_equity(d)[0].iloc[-1] == recs[-1].value
    assert replay_session(d).bars_ib == 120
    # the next run's upkeep removes the plain copy, keeping the complete gzip
    done = maintain_sessions(d.parent, NOW, records=journal_of(tmp_path, "s"))
    assert done.repaired == [f"removed {sf.part_path(d, 1)} (already compressed to "
                             "bars.000001.jsonl.gz)"]
    assert "bars.000001.jsonl" not in names(d) and load_session(d).bars == recs


def test_killed_mid_compression_leaves_the_plain_part_and_a_stray_temporary(tmp_path):
    recs = synthetic(60)
    d = tmp_path / "s"
    write_session(d, recs, part_bytes=10**9)
    split_active(d, 40)
    whole = gzip.compress(sf.part_path(d, 1).read_bytes())
    (d / ".bars.000001.jsonl.gz.999.1.tmp").write_bytes(whole[: len(whole) // 2])
    assert load_session(d).bars == recs
    assert sorted(sf.repair(d)) == sorted([
        f"removed the unfinished {d / '.bars.000001.jsonl.gz.999.1.tmp'}",
        f"compressed {sf.part_path(d, 1)}"])
    assert names(d) == ["bars.000001.jsonl.gz", "bars.jsonl", "meta.json"]
    assert load_session(d).bars == recs


def test_a_damaged_gzip_falls_back_to_its_plain_part_or_names_the_file(tmp_path):
    recs = synthetic(50)
    d = tmp_path / "s"
    write_session(d, recs, part_bytes=10**9)
    plain = sf.part_path(d, 1)
    os.replace(d / "bars.jsonl", plain)
    gz = sf.part_path(d, 1, gz=True)
    whole = gzip.compress(plain.read_bytes())
    gz.write_bytes(whole[: len(whole) * 2 // 3])  # truncated: reads part-way, then fails
    assert load_session(d).bars == recs  # the rest from the plain part, nothing twice
    plain.unlink()
    with pytest.raises(ConfigError, match=r"bars\.000001\.jsonl\.gz cannot be read"):
        load_session(d)


@pytest.mark.slow
def test_a_writer_killed_at_random_points_loses_at_most_the_line_being_written(tmp_path):
    """SIGKILL a writer rotating every ~20 lines with background gzip at three points: what
    is on disk reads back as an unbroken run of its lines, each once."""
    script = textwrap.dedent("""
        import json, sys
        from bt_ibkr.records.files import BarsWriter
        w = BarsWriter(sys.argv[1], part_bytes=2000)
        for k in range(10**7):
            w.write(json.dumps({"k": k, "pad": "x" * 80}))
            if k % 50 == 0:
                print(k, flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for n, stop_after in enumerate((1, 10, 60)):
        d = tmp_path / f"k{n}"
        proc = subprocess.Popen([sys.executable, "-c", script, str(d)],
                                stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(stop_after):
            seen = int(proc.stdout.readline())
        proc.kill()
        proc.wait()
        got = [json.loads(x)["k"] for x in sf.iter_lines(d) if x.endswith("\n")]
        assert got == list(range(len(got))) and len(got) > seen
        assert len([p for p in d.iterdir() if p.name.endswith(".gz")]) >= seen // 25
        sf.repair(d)
        assert [json.loads(x)["k"] for x in sf.iter_lines(d) if x.endswith("\n")] == got


# ------------------------------------------------------------------------------ reading
def test_stream_compare_equals_compare_across_chunks_and_unequal_lengths():
    a = synthetic(230, seed=1)
    b = [BarRecord(**r.to_dict()) for r in synthetic(241, seed=1)]
    for k in (3, 7, 8, 100, 150):  # decisions, values, orders differ here and there
        b[k].decision = {"intents": [["AAA", "SELL", "Market"]]}
        b[k + 1].value += 5.0
        b[k + 2].orders = []
    want = compare(Recording(bars=a), Recording(bars=b), 0.0)
    for chunk in (1, 7, 1000):
        diff = StreamCompare(0.0, chunk=chunk)
        for k in range(len(b)):
            diff.add(a[k] if k < len(a) else None, b[k])
        got = diff.report({}, {})
        assert got.to_dict() == dict(want.to_dict(), meta={"backtest": {}, "ib": {}})


def test_recorded_frames_from_a_stream_equal_those_from_a_recording(tmp_path):
    recs = synthetic(300, warm=37)
    d = write_session(tmp_path / "s", recs, part_bytes=20_000)
    frames, live_at = recorded_frames(Recording(bars=recs))
    streamed, streamed_live = recorded_frames(sf.iter_records(d))
    assert streamed_live == live_at == {"AAA": 37, "BBB": 37}
    for name, frame in frames.items():
        assert streamed[name].equals(frame) and len(frame) == 300


def _record_backtest(frame, directory: Path, part_bytes: int):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.setcommission(commission=1e-4)
    cerebro.adddata(ReplayFeed(dataname=frame, live_at=260), name="SPX")
    cerebro.addstrategy(RegimeAwareEnsemble, band=0.02)
    attach(cerebro, directory, {"run_id": "bt", "params": {"band": 0.02}}, part_bytes)
    return cerebro.run()[0].analyzers.session_record.get_analysis()


@pytest.mark.slow
def test_a_session_recorded_in_parts_replays_streamed_as_it_does_in_memory(spx, tmp_path):
    """SessionRecorder over the real S&P 500 sample (2015-2018, 1006 bars) writes to disk
    only; the record, in gzip'd parts, replays with no decision diff, streamed or not."""
    d = tmp_path / "sessions" / "bt"
    kept = _record_backtest(spx.loc["2015":"2018"], d, part_bytes=60_000)
    assert kept.bars == []  # nothing held in memory by the recorder
    parts = [n for n in names(d) if n.startswith("bars.")]
    numbered = [n for n in parts if n != "bars.jsonl"]
    # every closed part is compressed; a short last part may stay the plain active one
    assert len(numbered) >= 3 and all(n.endswith(".jsonl.gz") for n in numbered)
    assert set(parts) - set(numbered) <= {"bars.jsonl"}
    rec = load_session(d)
    assert len(rec.bars) == 1006 and [b.i for b in rec.bars] == list(range(1006))
    streamed, whole = replay_session(d), replay_recording(rec)
    assert streamed.decision_diffs == 0 and streamed.orders_ib > 5
    assert streamed.to_dict() == whole.to_dict()
    # a recorded decision that the Strategy would not make is found in the right part
    lines = list(sf.iter_lines(d))
    bar = json.loads(lines[700])
    bar["decision"]["targets"] = {"SPX": 0.123}
    lines[700] = json.dumps(bar) + "\n"
    for p in d.glob("bars.*"):
        p.unlink()
    (d / "bars.jsonl").write_text("".join(lines))
    out = replay_session(d)
    assert out.decision_diffs == 1 and out.first_divergence["bar"] == 700


@pytest.mark.slow
def test_the_tearsheet_streams_the_records_instead_of_loading_them(tmp_path):
    """Peak traced memory of session_equity over 6000 bars stays a small fraction of what
    holding the session's BarRecords takes (and the numbers are the same)."""
    d = write_session(tmp_path / "s", synthetic(6000), part_bytes=200_000)
    tracemalloc.start()
    try:
        values, closes = session_equity(d)
        streamed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        rec = load_session(d)
        loaded = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert streamed * 10 < loaded, (streamed, loaded)
    assert values.iloc[-1] == rec.bars[-1].value and len(values) == 1  # one day
    assert closes.iloc[-1] == rec.bars[-1].bars["AAA"][3]


# ------------------------------------------------------------------------------ retention
def _aged(root: Path, name: str, days: float, session: bool = True) -> Path:
    d = root / name
    if session:
        write_session(d, synthetic(5), part_bytes=10**9)
    else:
        d.mkdir(parents=True)
        (d / "notes.txt").write_text("mine")
    for p in [d, *d.iterdir()]:
        os.utime(p, (NOW - days * DAY, NOW - days * DAY))
    return d


def test_retention_deletes_only_session_folders_older_than_keep_days(tmp_path):
    root = tmp_path / "sessions"
    old, recent = _aged(root, "old", 31), _aged(root, "recent", 29)
    busy = _aged(root, "busy", 60)
    not_a_session = _aged(root, "mine", 90, session=False)
    (root / ".deleting-gone").mkdir()  # a deletion a killed run left half done
    writer = sf.BarsWriter(busy)  # a process is writing this one
    os.utime(busy / "bars.jsonl", (NOW - 60 * DAY, NOW - 60 * DAY))
    mine = journal_of(tmp_path, "old", "recent", "busy", "gone")
    assert maintain_sessions(root, NOW, records=mine).expired == []  # off unless asked
    assert {p.name for p in root.iterdir()} >= {"old", "recent", "busy", "mine"}
    done = maintain_sessions(root, NOW, keep_days=30, records=mine)
    writer.close()
    assert [(e.session, e.action, e.idle_days) for e in done.expired] == [
        ("old", "deleted", 31.0)]
    assert done.busy == ["busy"]
    assert not old.exists() and recent.is_dir() and busy.is_dir()
    assert (not_a_session / "notes.txt").read_text() == "mine"
    assert not (root / ".deleting-gone").exists()
    assert [p.name for p in find_sessions(root)] == ["busy", "recent"]
    assert done.lines()[0].startswith("sessions: deleted 1 record(s) not written for over 30")


def test_retention_can_archive_instead_and_refuses_an_archive_inside_the_sessions(tmp_path):
    root = tmp_path / "state" / "sessions"
    recs = load_session(_aged(root, "old", 10)).bars
    _aged(root, "new", 1)
    mine = journal_of(tmp_path, "old", "new")
    with pytest.raises(ConfigError, match="inside the sessions folder"):
        expire_sessions(root, 5, NOW, "archive", archive=root / "old-ones", records=mine)
    done = expire_sessions(root, 5, NOW, "archive", records=mine)
    archived = tmp_path / "state" / "sessions-archive" / "old"
    assert [(e.session, e.action, e.to) for e in done.expired] == [
        ("old", "archived", str(archived))]
    assert load_session(archived).bars == recs
    assert [p.name for p in find_sessions(root)] == ["new"]
    # an archive copy left by a run killed before it removed the original is not doubled
    _aged(root, "old", 10)
    again = expire_sessions(root, 5, NOW, "archive", records=mine)
    assert [e.to for e in again.expired] == [str(archived)]
    assert names(archived.parent) == ["old"] and not (root / "old").exists()


def test_compression_keeps_the_parts_time_so_retention_ages_them_by_their_bars(tmp_path):
    d = _aged(tmp_path, "s", 0)
    for p in [d, *d.iterdir()]:
        os.utime(p, (NOW - 40 * DAY, NOW - 40 * DAY))
    os.replace(d / "bars.jsonl", sf.part_path(d, 1))
    sf.compress_part(sf.part_path(d, 1))
    assert last_written(d) == pytest.approx(NOW - 40 * DAY)


def test_sessions_settings_are_validated_and_passed_from_the_command_line():
    from bt_ibkr.live.config import load_config
    from examples.live import _overrides, build_parser

    cfg = load_config(None, env={})
    assert (cfg.sessions.part_mb, cfg.sessions.keep_days, cfg.sessions.expired) == (
        16.0, None, "delete")
    args = build_parser().parse_args(["--session-part-mb", "0.5", "--keep-sessions-days", "90",
                                      "--archive-expired-sessions"])
    cfg = load_config(None, env={}, overrides=_overrides(args))
    assert (cfg.sessions.part_mb, cfg.sessions.keep_days, cfg.sessions.expired) == (
        0.5, 90.0, "archive")
    assert cfg.redacted()["sessions"]["keep_days"] == 90.0
    with pytest.raises(ConfigError, match=r"sessions\.part_mb: expected a number > 0"):
        load_config(None, env={}, overrides={"sessions.part_mb": 0})
    with pytest.raises(ConfigError, match=r"sessions\.expired: expected one of 'delete', "
                                          r"'archive', got 'archiv' \(did you mean"):
        load_config(None, env={}, overrides={"sessions": {"expired": "archiv"}})
