"""Test-wide fixtures: no test may reach the network beyond loopback."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import signal
import socket

import pytest

if importlib.util.find_spec("bt_ibkr.gateway_sim.pytest_plugin") is not None:
    pytest_plugins = ["bt_ibkr.gateway_sim.pytest_plugin"]

os.environ.setdefault("MPLBACKEND", "Agg")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback_host(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(address) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        if not _is_loopback_host(host):
            raise OSError(f"test tried to reach non-loopback address {address!r}: network is forbidden in tests")


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if isinstance(host, bytes):
        host = host.decode()
    if not _is_loopback_host(host):
        raise socket.gaierror(f"test tried to resolve {host!r}: network is forbidden in tests")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Refuse every non-loopback connection (and DNS lookup) for the whole test session."""
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True)
def _private_bar_cache(tmp_path_factory, monkeypatch):
    """Give every test its own parquet bar cache: no test reads another's (or the user's) bars."""
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path_factory.mktemp("bar_cache")))


@pytest.fixture(autouse=True)
def _no_decoder_errors():
    """Fail any test during which ib_async's or ib_insync's decoder logged an ERROR: the
    client drops a message it cannot decode and only logs it (tws-protocol.md G3)."""
    from helpers.sim import ErrorCatcher

    catcher = ErrorCatcher().install()
    yield catcher
    catcher.remove()
    assert not catcher.records, "client decoder errors: " + "; ".join(catcher.messages())


def _arch_frame(loader):
    df = loader.load()
    df.columns = [c.lower() for c in df.columns]
    return df[["open", "high", "low", "close", "volume"]]


@pytest.fixture(scope="session")
def spx():
    """The real S&P 500 daily bars 1999-2018 that arch ships (lowercase OHLCV columns)."""
    import arch.data.sp500

    return _arch_frame(arch.data.sp500)


@pytest.fixture(scope="session")
def ndx():
    """The real NASDAQ Composite daily bars 1999-2018 that arch ships (lowercase OHLCV)."""
    import arch.data.nasdaq

    return _arch_frame(arch.data.nasdaq)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a CLI's main() in tmp_path with logs there and no BT_IBKR_* connection settings from
    the environment; restore the signal handlers (the live CLI installs its own) afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    for var in ("BT_IBKR_PORT", "BT_IBKR_HOST", "BT_IBKR_MODE", "BT_IBKR_ACCOUNT",
                "BT_IBKR_CLIENT_ID", "BT_IBKR_CRASH_AT"):
        monkeypatch.delenv(var, raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield tmp_path
    for s, handler in saved.items():
        signal.signal(s, handler)
