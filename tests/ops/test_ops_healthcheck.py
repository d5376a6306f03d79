"""``doctor --healthcheck`` through the real client against the gateway simulator: a live
gateway, a dead one (port open, no answer), a stopped one and one logged into the wrong
account give the right exit code and one line (#20)."""

from __future__ import annotations

import socket
import threading

import pytest

from bt_ibkr.ops.healthcheck import HEALTHY, UNHEALTHY, WRONG_ACCOUNT, gateway_health


def test_a_gateway_that_answers_for_the_expected_account_is_healthy(gateway_sim_factory):
    sim = gateway_sim_factory(account="DU1234567")
    result = gateway_health(sim.host, sim.port, account="DU1234567", timeout=10)
    assert result.code == HEALTHY, result.line
    assert result.line.startswith(f"healthy: {sim.host}:{sim.port} answers (gateway time ")
    assert "logged into DU1234567" in result.line


@pytest.mark.slow
def test_a_port_that_accepts_but_never_answers_is_unhealthy():
    """After a restart the port can be open and dead: a listener that never handshakes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        result = gateway_health("127.0.0.1", port, account="DU1234567", timeout=2)
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        listener.close()
    assert result.code == UNHEALTHY, result.line
    assert result.line.startswith(f"unhealthy: 127.0.0.1:{port}")


@pytest.mark.slow
def test_a_gateway_that_does_not_answer_a_request_is_unhealthy(gateway_sim_factory):
    sim = gateway_sim_factory(account="DU1234567")
    sim.drop_replies(49, n=1000)  # reqCurrentTime never answered
    result = gateway_health(sim.host, sim.port, account="DU1234567", timeout=2)
    assert result.code == UNHEALTHY, result.line
    assert "did not answer a request" in result.line


def test_a_stopped_gateway_is_unhealthy(gateway_sim_factory):
    sim = gateway_sim_factory(account="DU1234567")
    host, port = sim.host, sim.port
    sim.stop()
    result = gateway_health(host, port, account="DU1234567", timeout=2)
    assert result.code == UNHEALTHY, result.line


def test_the_wrong_account_or_kind_is_exit_3(gateway_sim_factory):
    sim = gateway_sim_factory(account="DU7654321")
    result = gateway_health(sim.host, sim.port, account="DU1234567", timeout=10)
    assert result.code == WRONG_ACCOUNT
    assert result.line == (f"wrong account: {sim.host}:{sim.port} is logged into DU7654321, "
                           "not DU1234567")
    live = gateway_health(sim.host, sim.port, mode="live", timeout=10)
    assert live.code == WRONG_ACCOUNT and "not live account(s)" in live.line


def test_the_doctor_cli_healthcheck(gateway_sim_factory, capsys):
    from bt_ibkr.doctor import main

    sim = gateway_sim_factory(account="DU1234567")
    base = ["--healthcheck", "--host", sim.host, "--port", str(sim.port), "--timeout", "10"]
    assert main([*base, "--account", "DU1234567"]) == 0
    assert capsys.readouterr().out.startswith("healthy: ")
    assert main([*base, "--account", "DU9999999"]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("wrong account: ")
