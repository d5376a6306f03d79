"""One journal, one runner, whatever path names it (issue 18, point 2).

The lock is the journal database file itself (flock keyed by device and inode): a second
runner through the same path, a symlink or a relative path is refused with the holder's pid
and host; a hard link is refused as a second name of the journal (SQLite keeps its log by
name); there is no side file whose deletion lets a second runner in; a lock left by a killed
process is taken over. Holders are real processes; the CLI runs against the gateway
simulator and the orders are counted there."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bt_ibkr.live.journal import Journal
from bt_ibkr.live.run_lock import JournalLockedError, RunLock

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time\n"
        "from bt_ibkr.live.run_lock import RunLock\n"
        "lock = RunLock(sys.argv[1]); lock.acquire()\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n")  # held until the test closes stdin or kills it


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the journal at the given path; yield (start, procs)."""
    procs: list[subprocess.Popen] = []

    def start(path: Path) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(30)


def _refused(path: Path, pid: int) -> str:
    with pytest.raises(JournalLockedError) as err:
        RunLock(path).acquire()
    text = str(err.value)
    assert f"pid {pid} on host {socket.gethostname()}" in text, text
    return text


def test_the_same_path_a_symlink_and_a_relative_path_meet_one_lock(tmp_path, holder,
                                                                   monkeypatch):
    journal = tmp_path / "state" / "journal.sqlite"
    Journal(journal).close()
    p = holder(journal)
    _refused(journal, p.pid)
    link = tmp_path / "elsewhere.sqlite"
    link.symlink_to(journal)
    text = _refused(link, p.pid)
    assert str(journal) in text  # the journal's one name, not the link
    monkeypatch.chdir(tmp_path / "state")
    _refused(Path("journal.sqlite"), p.pid)
    # no side file to delete: whatever sits beside the journal, the lock is the file itself
    for side in journal.parent.iterdir():
        if side != journal:
            side.unlink()
    _refused(journal, p.pid)


def test_a_hard_link_is_a_second_name_and_is_refused(tmp_path):
    journal = tmp_path / "journal.sqlite"
    Journal(journal).close()
    os.link(journal, tmp_path / "copy.sqlite")
    for name in (journal, tmp_path / "copy.sqlite"):
        with pytest.raises(JournalLockedError, match="has 2 names"):
            RunLock(name).acquire()
        with pytest.raises(JournalLockedError, match="has 2 names"):
            Journal(name)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, holder):
    journal = tmp_path / "journal.sqlite"
    p = holder(journal)
    _refused(journal, p.pid)
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    with RunLock(journal) as lock:  # the kernel dropped the dead holder's lock
        assert lock.held
        with Journal(journal) as j:
            assert j.integrity_check() == "ok"


def test_two_opens_in_one_process_are_refused_too(tmp_path):
    journal = tmp_path / "journal.sqlite"
    with RunLock(journal):
        with pytest.raises(JournalLockedError, match="in use by another runner"):
            RunLock(journal).acquire()


def _cli(tmp_path: Path, port: int, journal: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), BT_IBKR_LOG_DIR=str(tmp_path / "logs"))
    env.pop("BT_IBKR_CRASH_AT", None)
    return subprocess.run(
        [sys.executable, "-m", "examples.live", "--paper", "--port", str(port), "--journal",
         str(journal), "--equity", str(tmp_path / "equity.csv"), "--max-runtime", "60"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.mark.slow
def test_a_second_runner_through_a_symlink_sends_nothing(gateway_sim_factory, tmp_path, holder):
    sim = gateway_sim_factory(data="sample")
    journal = tmp_path / "state" / "journal.sqlite"
    journal.parent.mkdir()
    link = tmp_path / "link.sqlite"
    link.symlink_to(journal)
    p = holder(journal)  # a runner holds the journal
    refused = _cli(tmp_path, sim.port, link)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[-1].startswith("error: journal ") and f"pid {p.pid} on host" in lines[-1]
    assert sim.broker.open_orders() + sim.broker.completed_orders() == []
    p.stdin.close()
    p.wait(30)
    first = _cli(tmp_path, sim.port, link)
    assert first.returncode == 0, first.stderr
    again = _cli(tmp_path, sim.port, journal)  # the other name: the same journal, nothing new
    assert again.returncode == 0, again.stderr
    refs = [o.spec.orderRef for o in sim.broker.open_orders() + sim.broker.completed_orders()]
    assert len(refs) == 1 == len(set(refs))
