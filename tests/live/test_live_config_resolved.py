"""A run resolves its config before it starts and never changes the caller's LiveConfig.

``--simulate`` is where the run used to rewrite the config it was given (the simulator's host
and port, the ``state/simulate/`` journal and equity paths): a caller running the same config
again (the service, a library loop) then ran with the previous simulator's address and never
set the previous simulated journal aside. The run now works on a resolved copy.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
from helpers.live import QTY, HoldTen, sim_position
from helpers.sim import poll_until

from bt_ibkr.live.audit import read_audit
from bt_ibkr.live.config import load_config
from bt_ibkr.live.options import RunOptions
from bt_ibkr.live.runner import LiveRunner

pytest.importorskip("ib_async")

HANG = 60


@pytest.mark.slow
def test_a_simulated_stream_run_leaves_its_config_as_it_was(tmp_path, monkeypatch):
    """A full stream run through the in-process simulator (warm-up, live bars, an order
    filled, a stop): the caller's config is equal to a deep copy taken before, while the run
    itself used the simulator's address and the simulated journal."""
    monkeypatch.chdir(tmp_path)  # the default paths, which --simulate moves under state/simulate
    cfg = load_config(None, env={}, overrides={"run_mode": "stream", "bar_size": "5 secs"})
    before = copy.deepcopy(cfg)
    HoldTen.last_bar, HoldTen.seen = None, []
    runner = LiveRunner(cfg, RunOptions(strategy=HoldTen, simulate=True,
                                        sim_options={"speed": 0.0},  # the test steps the clock
                                        max_runtime=HANG))
    out: dict = {}

    def target() -> None:
        try:
            out["result"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        poll_until(lambda: runner.connected.is_set() or not thread.is_alive(), HANG,
                   "the connection to the simulator")
        sim = runner.sim
        assert sim is not None, out.get("error")
        sim.wait_for_request("reqRealTimeBars", count=1, timeout=HANG)
        for _ in range(20):
            if sim_position(sim) >= QTY:
                break
            end = sim.advance(seconds=5).replace(tzinfo=None)
            poll_until(lambda end=end: (HoldTen.last_bar is not None and HoldTen.last_bar >= end)
                       or not thread.is_alive(), HANG, f"the bar ending {end}")
        address = (sim.host, sim.port)
        assert sim_position(sim) == QTY
    finally:
        runner.stop("test")
        thread.join(HANG)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    result = out["result"]
    assert [o["status"] for o in result.orders] == ["filled"]
    assert cfg == before  # nothing of the caller's config changed: paths, connection, ...
    assert cfg.paths.journal == Path("state/{account}/journal.sqlite")
    assert cfg.connection.port == 4002
    # ... while the run used the resolved copy
    assert result.journal == str(Path("state/simulate/journal.sqlite"))
    assert result.equity_file == str(Path("state/simulate/equity.csv"))
    assert runner.run_config.connection.host == address[0]
    assert runner.run_config.port == address[1]
    (connected,) = [r for r in read_audit(Path(result.audit))
                    if r.get("kind") == "connection" and r.get("event") == "connected"]
    assert (connected["host"], connected["port"]) == address


def test_one_config_run_twice_with_simulate_starts_each_simulator_afresh(tmp_path, monkeypatch):
    """The service runs one LiveConfig session after session. With ``--simulate`` each run has
    a fresh simulator, so each starts a fresh simulated journal (the previous one kept as
    ``*.prev``) and trades the same: before, the first run rewrote the config's paths, so the
    second reused a journal describing a simulator that no longer existed."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    first = LiveRunner(cfg, RunOptions(simulate=True, max_runtime=HANG)).run()
    assert [o["status"] for o in first.orders] == ["filled"]
    second = LiveRunner(cfg, RunOptions(simulate=True, max_runtime=HANG)).run()
    assert second.journal == first.journal == str(Path("state/simulate/journal.sqlite"))
    assert Path("state/simulate/journal.sqlite.prev").exists()
    assert [(o["orderRef"], o["status"]) for o in second.orders] == \
        [(o["orderRef"], o["status"]) for o in first.orders]
    assert second.needs_attention == []


def test_the_config_cannot_be_changed_in_place():
    """Every section of a LiveConfig is frozen: a changed config is a new one."""
    import dataclasses

    cfg = load_config(None, env={})
    for target, name in ((cfg, "mode"), (cfg.connection, "port"), (cfg.paths, "journal"),
                         (cfg.risk, "max_daily_loss"), (cfg.sessions, "part_mb"),
                         (cfg.ops, "http_port")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(target, name, getattr(target, name))
    assert dataclasses.replace(cfg, mode="live").mode == "live" and cfg.mode == "paper"
