"""Test helper: a RegimeAwareEnsemble whose Dask tasks stay open until the test opens a gate.

On a Dask worker, ``GatedEnsemble.stop()`` waits for the distributed Event ``GATE``, so the
test can see tasks executing (a deterministic state, not a race against their run time), kill a
worker, and only then let the tasks finish. Outside Dask (a serial run) there is no gate, and
the trading is RegimeAwareEnsemble's, bar for bar.
"""

from __future__ import annotations

from strategies import RegimeAwareEnsemble

GATE = "bt-ibkr-test-gate"


def _wait_at_gate() -> None:
    try:
        from distributed import Event, get_worker

        get_worker()
    except (ImportError, ValueError):
        return  # not on a Dask worker
    if not Event(GATE).wait(timeout=120):  # hang guard
        raise TimeoutError(f"the test never opened {GATE}")


class GatedEnsemble(RegimeAwareEnsemble):
    """RegimeAwareEnsemble that holds its Dask task open at ``stop()`` until ``GATE`` is set."""

    def stop(self):
        super().stop()
        _wait_at_gate()


class SomeGatedEnsemble(RegimeAwareEnsemble):
    """RegimeAwareEnsemble whose Dask task waits at ``GATE`` only when its param ``gated`` is
    true: a sweep over ``gated=false,true`` has tasks that finish and tasks held open."""

    params = (("gated", False),)

    def stop(self):
        super().stop()
        if self.p.gated:
            _wait_at_gate()
