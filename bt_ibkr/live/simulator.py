"""The in-process gateway simulator of a ``--simulate`` run, and the config such a run uses.

:func:`start_simulator` starts a :class:`~bt_ibkr.gateway_sim.GatewaySim` (sample data, paper
account DU1234567; a running clock for stream runs) and returns it with the run's resolved
config: the caller's config with the simulator's address and, where the paths are the
defaults, ``state/simulate/...`` journal and equity curve, so simulated orders never mix with
the real account's. The caller's config is never changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bt_ibkr.live.config import LiveConfig, PathsConfig

SIM_ACCOUNT = "DU1234567"
"""The paper account the simulator of a ``--simulate`` run is logged into."""

SIM_JOURNAL = Path("state/simulate/journal.sqlite")
SIM_EQUITY = Path("state/simulate/equity.csv")


def simulated_paths(config: LiveConfig) -> tuple[LiveConfig, list[Path]]:
    """Return ``config`` with its default journal / equity paths moved under
    ``state/simulate/``, and the paths so moved (a new LiveConfig; ``config`` is unchanged)."""
    defaults, paths = PathsConfig(), config.paths
    moved: dict[str, Path] = {}
    if paths.journal == defaults.journal:
        moved["journal"] = SIM_JOURNAL
    if paths.equity == defaults.equity:
        moved["equity"] = SIM_EQUITY
    if not moved:
        return config, []
    return replace(config, paths=replace(paths, **moved)), list(moved.values())


def set_aside(path: Path) -> None:
    """Rename ``path`` (and SQLite's -wal/-shm companions) to ``*.prev``, replacing older ones."""
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.replace(Path(str(p) + ".prev"))


def start_simulator(config: LiveConfig, sim_options: Mapping[str, Any]) -> tuple[Any, LiveConfig]:
    """Start the in-process GatewaySim for ``config``; return ``(sim, resolved config)``.

    ``sim_options`` are extra GatewaySim keyword arguments (over the sample data, the paper
    account and, for stream runs, a running clock). The simulator starts fresh every run, so
    the previous run's simulated journal and equity curve (at the default simulated paths)
    describe a gateway that no longer exists: they are kept as ``*.prev`` and the run starts
    anew. The caller stops the simulator (``sim.stop()``).
    """
    from bt_ibkr.gateway_sim import GatewaySim

    opts: dict[str, Any] = {"data": "sample", "account": SIM_ACCOUNT}
    if config.run_mode == "stream":
        opts["speed"] = 1.0  # a running clock: live bars arrive in real time
    opts.update(sim_options)
    sim = GatewaySim(**opts).start()
    resolved, moved = simulated_paths(config)
    try:
        for path in moved:
            set_aside(path)
    except BaseException:
        sim.stop()
        raise
    resolved = replace(resolved, connection=replace(resolved.connection, host=sim.host,
                                                    port=sim.port))
    return sim, resolved


__all__ = ["SIM_ACCOUNT", "set_aside", "simulated_paths", "start_simulator"]
