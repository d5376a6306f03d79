"""Cost of the IB parity path against the backtest path on the same bars.

    python -m bench.parity [--bars 1260] [--symbols ^GSPC] [--repeats 1]

Runs RegimeAwareEnsemble over the last ``--bars`` daily bars of the arch sample (default five
years of ^GSPC) through (a) Cerebro + BackBroker and (b) Cerebro + IBStore/IBBroker/IBData
against the gateway simulator on its fast (frozen, step-on-demand) clock, one session per
step in lockstep (bt_ibkr.parity.paths). Wall seconds of each whole path (median over
``--repeats``), both in this process. Prints ONE JSON object:

    bars, symbols, backtest_s, ib_s, ratio (ib_s / backtest_s), ib_ms_per_bar,
    backtest_next_s, ratio_next (ib_s / backtest_next_s), decision_diffs (must be 0)

``backtest_next_s`` is the same backtest with preloading and vectorized indicators off
(``preload=False``): backtrader runs every live feed that way, bar by bar, so it is the part of
the IB path's cost no broker or socket can remove. The rest is the gateway's messages (each
session's bar, fills, and the account values TWS pushes), ib_async decoding them, and one
request per bar that paces the simulator's clock (bt_ibkr.parity.paths).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.parity")
    p.add_argument("--bars", type=int, default=1260)
    p.add_argument("--symbols", default="^GSPC")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)

    from bt_ibkr.parity.diff import compare
    from bt_ibkr.parity.paths import ParityConfig, run_backtest_path, run_ib_path
    from feeds.sample import load_sample
    from strategies import RegimeAwareEnsemble

    frames = {s: load_sample(s).iloc[-args.bars:] for s in args.symbols.split(",")}
    cfg = ParityConfig(client_id=91)
    back_t, next_t, ib_t = [], [], []
    diffs = 0
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        back = run_backtest_path(frames, RegimeAwareEnsemble, {}, cfg)
        back_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_backtest_path(frames, RegimeAwareEnsemble, {}, replace(cfg, preload=False))
        next_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ib = run_ib_path(frames, RegimeAwareEnsemble, {}, cfg)
        ib_t.append(time.perf_counter() - t0)
        diffs += compare(back, ib).decision_diffs
    bars = max(len(f) for f in frames.values())
    backtest_s, ib_s = statistics.median(back_t), statistics.median(ib_t)
    next_s = statistics.median(next_t)
    print(json.dumps({"bars": bars, "symbols": list(frames), "backtest_s": round(backtest_s, 4),
                      "ib_s": round(ib_s, 4), "ratio": round(ib_s / backtest_s, 2),
                      "ib_ms_per_bar": round(1000 * ib_s / bars, 3),
                      "backtest_next_s": round(next_s, 4),
                      "ratio_next": round(ib_s / next_s, 2),
                      "decision_diffs": diffs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
