"""pytest fixtures for the gateway simulator (registered via ``pytest_plugins``).

``gateway_sim``: a running ``GatewaySim`` (synthetic data, seed 0, free port, clock frozen
until ``advance()``), stopped after the test. Parametrize it indirectly to change options::

    @pytest.mark.parametrize("gateway_sim", [{"data": "sample"}], indirect=True)
    def test_x(gateway_sim): ...

``gateway_sim_factory``: call it with GatewaySim keyword arguments to get more simulators;
all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bt_ibkr.gateway_sim.harness import GatewaySim


@pytest.fixture
def gateway_sim_factory() -> Iterator[Callable[..., GatewaySim]]:
    """Return a factory ``make(**GatewaySim kwargs) -> started GatewaySim``."""
    sims: list[GatewaySim] = []

    def make(**kwargs: object) -> GatewaySim:
        sim = GatewaySim(**kwargs).start()  # type: ignore[arg-type]
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


@pytest.fixture
def gateway_sim(request: pytest.FixtureRequest,
                gateway_sim_factory: Callable[..., GatewaySim]) -> GatewaySim:
    """Return a started GatewaySim on a free loopback port (options via indirect param)."""
    options = getattr(request, "param", None) or {}
    return gateway_sim_factory(**options)
