"""Session records: a failure never strands an order, and records stay with their journal.

* A stream run whose session record cannot be written (something in the way of its next part,
  a part that cannot be compressed: real OS errors, not a mocked recorder) stops: its resting
  order is cancelled at the gateway (``cancel_on_exit``), it exits 2 and its last line names
  the file. Any other error raised while the Strategy runs cancels the same way.
* A real ENOSPC (``/dev/full``) names the bar file and says to free disk space.
* Two journals in one folder: each one's ``--report`` covers its own sessions only, and one's
  ``--keep-sessions-days`` never deletes the other's; records no journal lists are left alone
  and reported once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import backtrader as bt
import pytest
from helpers.live import RestingLimit  # also named by the config below
from helpers.sim import stream_config

from bt_ibkr.errors import BtIbkrError, RecordsError
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner
from bt_ibkr.records.files import BARS
from bt_ibkr.records.ownership import JournalRecords
from bt_ibkr.records.sessions import SessionWriter
from examples import live as cli

ROOT = Path(__file__).resolve().parents[2]
HANG = 60.0  # hang guard of every wait below; never what a test relies on


class RestThenFail(RestingLimit):
    """RestingLimit, then an error at the first bar after the gateway accepted the order."""

    def next(self):
        orders = list(self.broker.orders.values())
        if orders and orders[0].status == bt.Order.Accepted:
            raise RuntimeError("strategy bug after the order rests")


def wait_for(cond, what: str, step=None) -> None:
    deadline = time.monotonic() + HANG
    while not cond():
        assert time.monotonic() < deadline, f"hang guard: {what} within {HANG:g}s"
        if step is not None:
            step()
        time.sleep(0.05)


def cli_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.pop("BT_IBKR_CRASH_AT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                         env.get("PYTHONPATH", "")])
    env["BT_IBKR_LOG_DIR"] = str(tmp_path / "logs")
    return env


def block_next_parts(session: Path, gz: bool) -> list[Path]:
    """Put a directory where the session's next parts (``gz``: their gzip) will go: the
    writer's rename into place then fails with the OS's EISDIR. Return the directories."""
    made = []
    for k in range(1, 400):
        plain = session / f"bars.{k:06d}.jsonl"
        target = Path(f"{plain}.gz") if gz else plain
        if target.exists() or (not gz and Path(f"{plain}.gz").exists()):
            continue
        with contextlib.suppress(FileExistsError):  # the writer got there first
            target.mkdir()
            made.append(target)
    return made


# ------------------------------------------------------------------ a records failure mid-run
@pytest.mark.slow
@pytest.mark.parametrize("gz", [False, True], ids=["part-in-the-way", "part-not-compressed"])
def test_a_stream_run_whose_record_fails_cancels_its_order_and_exits_2_naming_the_file(
        gateway_sim_factory, tmp_path, gz):
    sim = gateway_sim_factory(data="sample")
    config = tmp_path / "live.json"
    config.write_text(json.dumps({
        "run_mode": "stream", "bar_size": "5 secs",
        "strategy": {"name": "helpers.live:RestingLimit"},
        "risk": {"cancel_on_exit": True}, "paths": {"logs": str(tmp_path / "logs")},
        # ~100 bytes: every bar closes a part, so the next bar needs a new part
        "sessions": {"part_mb": 0.0001}}))
    args = [sys.executable, "-m", "examples.live", "--paper", "--port", str(sim.port),
            "--journal", str(tmp_path / "journal.sqlite"), "--equity", str(tmp_path / "eq.csv"),
            "--config", str(config), "--max-runtime", str(HANG)]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        sim.wait_for_request("reqRealTimeBars", timeout=HANG)
        wait_for(lambda: sim.broker.open_orders(), "the resting limit order",
                 step=lambda: sim.advance(seconds=5))
        (ref,) = [o.spec.orderRef for o in sim.broker.open_orders()]
        (session,) = (tmp_path / "sessions").iterdir()
        blocked = block_next_parts(session, gz)
        wait_for(lambda: proc.poll() is not None, "the run to stop",
                 step=lambda: sim.advance(seconds=5))
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr[-3000:]
    # the order did not stay working: cancel_on_exit was honoured on this stop path
    assert sim.broker.open_orders() == [], stderr[-3000:]
    assert "cancel_on_exit: cancelling 1 working order(s)" in stderr
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.get(ref).status == "cancelled"
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: session record {session}"), last
    assert any(str(d) in last for d in blocked), last  # names what is in the way
    assert "Is a directory" in last and "run again" in last
    # what was recorded before the failure is still there, and the folder is not locked
    assert (session / "meta.json").is_file() and not (session / ".lock").exists()


def test_any_error_raised_while_the_strategy_runs_cancels_the_resting_order_first(
        gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = stream_config(tmp_path, sim.port)
    lines: list[str] = []
    runner = LiveRunner(cfg, strategy=RestThenFail, max_runtime=HANG, progress=lines.append)
    out: dict = {}

    def target():
        try:
            runner.run()
        except BaseException as exc:  # noqa: BLE001 - checked below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    sim.wait_for_request("reqRealTimeBars", timeout=HANG)
    wait_for(lambda: not thread.is_alive(), "the run to stop", step=lambda: sim.advance(seconds=5))
    assert isinstance(out.get("error"), RuntimeError), out  # the run's own error, raised again
    assert sim.broker.completed_orders() and sim.broker.open_orders() == []
    (order,) = sim.broker.completed_orders()
    assert order.status == "Cancelled"
    assert "!! stopping on an error (RuntimeError); no new decision" in lines
    assert "cancel_on_exit: cancelling 1 working order(s)" in lines


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_names_the_bar_file_and_says_to_free_space(tmp_path):
    """A real ENOSPC from the kernel (/dev/full) on the bar file: one RecordsError naming it;
    every later write raises the same; closing releases the folder."""
    session = tmp_path / "sessions" / "run1"
    session.mkdir(parents=True)
    (session / BARS).symlink_to("/dev/full")
    writer = SessionWriter(session, {"run_id": "run1"})
    with pytest.raises(RecordsError) as caught:
        writer(_record())
    err = caught.value
    assert isinstance(err, OSError) and isinstance(err, BtIbkrError)
    assert err.errno == errno.ENOSPC and err.filename == str(session / BARS)
    text = str(err)
    assert text.startswith(f"session record {session / BARS}: cannot append a bar")
    assert "No space left on device" in text and "free disk space" in text
    assert "\n" not in text
    with pytest.raises(RecordsError):
        writer(_record())
    writer.abort()
    assert not (session / ".lock").exists()


def test_a_session_folder_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "sessions").write_text("a file where the sessions folder goes")
    with pytest.raises(RecordsError, match=re.escape(str(tmp_path / "sessions"))):
        SessionWriter(tmp_path / "sessions" / "run1", {"run_id": "run1"})


def _record():
    from bt_ibkr.records.recorder import BarRecord

    return BarRecord(i=0, dt="2024-01-02T14:30:00", bars={"SPY": [1.0, 1.0, 1.0, 1.0, 1.0]},
                     decision={}, orders=[], fills=[], position={"SPY": 0.0}, cash=1.0,
                     value=1.0)


# ------------------------------------------------------------------ two journals in one folder
def _period(html: str) -> tuple[str, str]:
    """The first and last day the tearsheet covers (its heading's period)."""
    day = r"(\d{1,2} \w{3}, \d{4})"
    m = re.search(rf"\(Compounded\)\s*(?:<dt>)?\s*{day}\s*-\s*{day}", html)
    if m:
        return tuple(datetime.strptime(d, "%d %b, %Y").date().isoformat() for d in m.groups())
    # fewer days than the ratios need: the page lists the values and says their period
    m = re.search(r"days of account value \((\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d);", html)
    assert m, "no period on the page"
    return m.group(1), m.group(2)


def _age(folder: Path, days: float) -> None:
    then = time.time() - days * 86_400
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (then, then))


@pytest.mark.slow
def test_two_journals_in_one_folder_each_report_and_keep_only_their_own_records(
        in_tmp, capsys, gateway_sim_factory):
    ny = ZoneInfo("America/New_York")
    sims = {"a": gateway_sim_factory(data="sample", account="DU1111111"),
            "b": gateway_sim_factory(data="sample", account="DU2222222",
                                     start=datetime(2016, 6, 1, 9, 30, tzinfo=ny))}
    state = in_tmp / "state"

    def run(name: str, *extra: str) -> str:
        code = cli.main(["--paper", "--port", str(sims[name].port),
                         "--journal", str(state / f"{name}.sqlite"),
                         "--equity", str(state / f"{name}.csv"),
                         "--report", f"{name}.html", "--max-runtime", str(HANG), *extra])
        err = capsys.readouterr().err
        assert code == 0, err[-3000:]
        return err

    run("a")
    run("b")
    roots = {n: sorted(p.name for p in (state / "sessions").iterdir()
                       if json.loads((p / "meta.json").read_text())["account"] == acct)
             for n, acct in (("a", "DU1111111"), ("b", "DU2222222"))}
    assert len(roots["a"]) == len(roots["b"]) == 1
    # each one's report covers its own days only (b trades June 2016, a January 2017)
    a_first, a_last = _period((in_tmp / "a.html").read_text(encoding="utf-8"))
    b_first, b_last = _period((in_tmp / "b.html").read_text(encoding="utf-8"))
    assert a_first > "2016-12" and b_last < "2016-07", ((a_first, a_last), (b_first, b_last))
    # new records name their journal
    meta = json.loads((state / "sessions" / roots["a"][0] / "meta.json").read_text())
    assert meta["journal"] == {"path": str(state / "a.sqlite")}

    # every record is old now; one more is an old-format record no journal lists
    stray = state / "sessions" / "20150101T000000Z-0badc0de"
    stray.mkdir()
    (stray / "meta.json").write_text(json.dumps({"run_id": stray.name, "account": "DU9"}))
    (stray / BARS).write_text("")
    for p in (state / "sessions").iterdir():
        _age(p, 100)
    err = run("a", "--keep-sessions-days", "30")
    left = sorted(p.name for p in (state / "sessions").iterdir())
    assert roots["a"][0] not in left  # a's expired record is deleted
    assert roots["b"][0] in left and stray.name in left  # b's and the stray one are not
    assert "sessions: deleted 1 record(s)" in err
    told = [ln for ln in err.splitlines() if "are not of a run of journal" in ln]
    assert len(told) == 1 and stray.name in told[0] and roots["b"][0] not in told[0]
    # b's retention, run the same way, deletes b's only; a's new record stays
    err_b = run("b", "--keep-sessions-days", "30")
    assert roots["b"][0] not in {p.name for p in (state / "sessions").iterdir()}
    assert stray.is_dir() and len(list((state / "sessions").iterdir())) == 3  # a's, b's, stray
    assert stray.name in err_b  # b has not reported it before
    # reported once per journal: a's next run does not repeat it
    assert "are not of a run of journal" not in run("a", "--keep-sessions-days", "30")
    with Journal(state / "a.sqlite") as j:
        records = JournalRecords.of(state / "a.sqlite", [r.run_id for r in j.runs()])
    assert len(records.run_ids) == 3


def test_which_journal_a_record_belongs_to(tmp_path):
    """New records by the journal they name, old ones by the runs table; a copied journal
    (listing the same runs) does not take the original's records; nothing else is claimed."""
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    a.write_bytes(b"")
    b.write_bytes(b"")
    root = tmp_path / "sessions"

    def record(name: str, **meta) -> Path:
        d = root / name
        d.mkdir(parents=True)
        (d / "meta.json").write_text(json.dumps({"run_id": name, **meta}))
        return d

    new_a = record("r1", journal={"path": str(a)})
    new_b = record("r2", journal={"path": str(b)})
    old = record("r3")  # before the field existed
    moved = record("r4", journal={"path": str(tmp_path / "gone" / "a.sqlite")})
    stray = record("r5")
    damaged = root / "r6"
    damaged.mkdir()
    (damaged / "meta.json").write_text("{not json")
    ja = JournalRecords.of(a, ["r1", "r3", "r4", "r6"])
    assert [ja.claim(d) for d in (new_a, new_b, old, moved, stray, damaged)] == [
        "ours", "other", "ours", "ours", "unclaimed", "unclaimed"]
    copy = JournalRecords.of(b, ["r1", "r2"])  # b.sqlite began as a copy of a.sqlite
    assert [copy.claim(d) for d in (new_a, new_b)] == ["other", "ours"]
    assert ja.meta() == {"journal": {"path": str(a)}}
    assert ja.claims_leftover("r1") and ja.claims_leftover("r1-2")
    assert not ja.claims_leftover("r2")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_a_full_disk_under_the_audit_log_names_it(tmp_path):
    """A write to an open file carries no file name (the live CLI said "cannot use a file"):
    the audit log's error names the log (a real ENOSPC from /dev/full)."""
    from bt_ibkr.live.audit import AuditLog

    path = tmp_path / "audit-20240102.jsonl"
    path.symlink_to("/dev/full")
    audit = AuditLog(path)
    with pytest.raises(OSError) as caught:
        audit.write("run", event="start")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    audit.close()
