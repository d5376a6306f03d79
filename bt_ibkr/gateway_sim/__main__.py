"""Command line: ``python -m bt_ibkr.gateway_sim --port 4002 --account DU1234567``.

Serves a simulated IB Gateway on 127.0.0.1 until Ctrl-C (or ``--lifetime`` seconds), logging
every client request as one line to stderr and ``logs/gateway_sim.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bt_ibkr.errors import BtIbkrError
from bt_ibkr.gateway_sim.server import MAX_SERVER_VERSION, GatewayServer

log = logging.getLogger("bt_ibkr.gateway_sim")


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m bt_ibkr.gateway_sim",
        description="Simulated IB Gateway (TWS socket protocol) on 127.0.0.1 for tests, demos "
                    "and dry runs. Point ib_async/ib_insync or bt_ibkr at --port.")
    p.add_argument("--port", type=int, default=4002, help="TCP port (default 4002, paper "
                   "gateway's port; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="must be 127.0.0.1 (loopback only)")
    p.add_argument("--account", default="DU1234567", help="managed account id")
    p.add_argument("--data", choices=("sample", "synthetic"), default="synthetic",
                   help="sample = real S&P 500/NASDAQ from arch (1999-2018); synthetic = "
                        "seeded GBM")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--start", default=None, help="simulated start, 'YYYY-MM-DD HH:MM' New York "
                   "time (default 2017-01-03 09:30 sample / 2024-01-02 09:30 synthetic)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per real second (default 1 = real time)")
    p.add_argument("--lifetime", type=float, default=None,
                   help="stop after this many real seconds (default: until Ctrl-C)")
    p.add_argument("--max-server-version", type=int, default=MAX_SERVER_VERSION,
                   help=f"highest TWS server version to negotiate (157..{MAX_SERVER_VERSION})")
    p.add_argument("--pacing", action="store_true", help="enforce IB's historical pacing")
    p.add_argument("--no-live-data", action="store_true",
                   help="simulate an account without live market-data subscriptions "
                        "(live reqMktData -> error 10089; use delayed data, type 3)")
    p.add_argument("--fill-mode", choices=("immediate", "next_bar"), default=None,
                   help="order engine fill model (default: the engine's own default)")
    p.add_argument("--log-file", default="logs/gateway_sim.log", help="request log file")
    return p


def _setup_logging(log_file: str) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    log.addHandler(err)
    path = Path(log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(fmt)
    log.addHandler(fh)
    log.propagate = False


async def _serve(server: GatewayServer, port: int, lifetime: float | None) -> None:
    await server.start(port)
    try:
        if lifetime is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(lifetime)
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 2 bad arguments or port in use)."""
    args = build_parser().parse_args(argv)
    start = None
    try:
        if args.start:
            start = datetime.strptime(args.start, "%Y-%m-%d %H:%M").replace(
                tzinfo=ZoneInfo("America/New_York"))
        server = GatewayServer(
            account=args.account, data=args.data, seed=args.seed, start=start,
            speed=args.speed, max_server_version=args.max_server_version, pacing=args.pacing,
            host=args.host, live_data=not args.no_live_data,
            broker_options={"fill_mode": args.fill_mode} if args.fill_mode else None)
    except ValueError as exc:  # ConfigError is a ValueError
        print(f"gateway_sim: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.log_file)
    try:
        asyncio.run(_serve(server, args.port, args.lifetime))
    except BtIbkrError as exc:
        print(f"gateway_sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.info("gateway_sim stopped (Ctrl-C)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
