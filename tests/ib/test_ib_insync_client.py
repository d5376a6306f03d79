"""The same store/broker/feed tests pass with ib_insync selected (BT_IBKR_CLIENT=ib_insync).

The client library is chosen once per process when bt_ibkr.ib.client is imported, so the
ib_insync run is a pytest subprocess over a subset of the IB tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, env_value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("BT_IBKR_CLIENT", None)
    if env_value is not None:
        env["BT_IBKR_CLIENT"] = env_value
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_client_selection_by_environment_variable():
    code = "import bt_ibkr.ib.client as c; print(c.CLIENT_NAME, c.IB.__module__)"
    assert _run(code, None).stdout.split() == ["ib_async", "ib_async.ib"]
    insync = _run(code, "ib_insync")
    if __import__("importlib").util.find_spec("ib_insync") is None:
        # not installed (README's plain test set-up): a clear error that says how to get it
        assert insync.returncode != 0
        assert "selects a client that is not installed" in insync.stderr
        assert "pip install ib_insync" in insync.stderr
    else:
        assert insync.stdout.split() == ["ib_insync", "ib_insync.ib"]
    bad = _run(code, "ibpy")
    assert bad.returncode != 0 and "BT_IBKR_CLIENT='ibpy' is not a supported IB client" in bad.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("ib_insync") is None, reason="ib_insync not installed"
)
def test_store_broker_and_feed_tests_pass_with_ib_insync():
    env = dict(os.environ, BT_IBKR_CLIENT="ib_insync")
    tests = [
        "tests/ib/test_ib_store.py",
        "tests/ib/test_ib_broker.py",
        "tests/ib/test_followed_fills.py",
        "tests/feeds/test_ib_data.py::test_historical_daily_range_is_chunked_and_complete",
        "tests/feeds/test_ib_data.py::test_reconnect_backfills_the_gap_without_duplicates_or_holes",
        "tests/feeds/test_ib_data.py::test_live_backfill_then_rtbars_resample_to_ibs_own_minute_bars",
        "tests/feeds/test_ib_data.py::test_errors_that_stop_a_feed_reach_notify_data_with_their_code",
    ]
    probe = "import bt_ibkr.ib.client as c; assert c.CLIENT_NAME == 'ib_insync'"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail
