"""Parity: run one Strategy over the same bars through the backtest and through IB (the
gateway simulator), compare them bar by bar; or replay recorded live sessions.

    python -m examples.parity                                    # ^GSPC sample, last 5 years
    python -m examples.parity --symbols ^GSPC,^IXIC --start 2014-01-01 --end 2018-12-31 \\
        --json parity.json --report parity.html
    python -m examples.parity --strategy mypkg.mod:MyStrategy --param fast=10
    python -m examples.parity --replay state/DU1234567/sessions  # an account's recorded sessions

A thin CLI over bt_ibkr.parity. Exit codes: 0 decisions match, 4 they diverge, 2 bad input
(one line naming it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bt_ibkr.backtest_run import MAX_BPS, check_history_length, check_outputs, warmup_bars
from bt_ibkr.cli_args import (
    OneLineParser,
    data_selection,
    finite_number,
    iso_date,
    positive_float,
)
from bt_ibkr.errors import BtIbkrError
from bt_ibkr.logs import setup_logging
from bt_ibkr.redaction import masked_main
from bt_ibkr.sources import REQUEST_SOURCES

DIVERGED = 4
SOURCES = REQUEST_SOURCES


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m examples.parity", description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", default="^GSPC", help="comma-separated symbols (default ^GSPC)")
    p.add_argument("--source", choices=SOURCES, default=None,
                   help="data source (default sample: offline; csv when --csv is given)")
    p.add_argument("--csv", help="CSV file(s) for --source csv (comma-separated, one per symbol)")
    p.add_argument("--start", type=iso_date, help="first date, YYYY-MM-DD (default: 5 years "
                   "before --end)")
    p.add_argument("--end", type=iso_date, help="last date, YYYY-MM-DD (default: the data's last)")
    p.add_argument("--strategy", help="module:Class (default RegimeAwareEnsemble)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy param (repeatable)")
    p.add_argument("--cash", type=positive_float, default=100_000.0, help="starting cash (default 100000)")
    p.add_argument("--commission-bps", type=finite_number(0, high=MAX_BPS), default=1.0,
                   help="commission in bp of traded value, both paths (default 1)")
    p.add_argument("--slippage-bps", type=finite_number(0, high=MAX_BPS), default=0.0,
                   help="backtest slippage in bp (the simulator has none: shows as fill diffs)")
    p.add_argument("--tolerance", type=finite_number(0, high=1), default=0.0,
                   help="relative fill/order/value difference reported as a match (default 0)")
    p.add_argument("--partial-fill-qty", type=positive_float, default=None, metavar="SHARES",
                   help="the simulator fills at most this many shares per bar (> 0)")
    p.add_argument("--replay", type=Path, metavar="DIR",
                   help="replay recorded session(s) (a session dir or state/<ACCOUNT>/sessions)")
    p.add_argument("--report", type=Path, help="write the HTML diff report here")
    p.add_argument("--journal", type=Path,
                   help="--replay: the journal whose digests the records are checked against "
                   "(default: journal.sqlite beside the sessions folder)")
    p.add_argument("--json", type=Path, help="write the JSON summary here")
    return p


def _frames(args):
    from bt_ibkr.parity.run import load_frames

    source = args.source or ("csv" if args.csv else "sample")
    data = data_selection(args.symbols, source, args.csv)
    frames = load_frames(data.symbols, data.source, args.start, args.end,
                         csv_paths=data.csv_paths)
    if args.start is None:
        import pandas as pd

        last = max(f.index[-1] for f in frames.values())
        first = last - pd.DateOffset(years=5)
        frames = {k: f.loc[f.index > first] for k, f in frames.items()}
    return frames


@masked_main
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 match, 4 diverged, 2 bad input).

    Everything it prints and writes has the environment's secrets masked (bt_ibkr.redaction).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        log_path = setup_logging("parity")
    except OSError as exc:
        print(f"error: log folder (BT_IBKR_LOG_DIR or ./logs): {exc}", file=sys.stderr)
        return 2
    try:
        from bt_ibkr.params import parse_params, resolve_strategy
        from bt_ibkr.parity.paths import ParityConfig
        from bt_ibkr.parity.report import write_html
        from bt_ibkr.parity.run import run_parity, write_json

        cfg = ParityConfig(cash=args.cash, commission_bps=args.commission_bps,
                           slippage_bps=args.slippage_bps, tolerance=args.tolerance,
                           partial_fill_qty=args.partial_fill_qty)
        cfg.validate()
        check_outputs((("--json", args.json), ("--report", args.report)))
        if args.replay is not None:
            from bt_ibkr.parity.sessions import replay

            report = replay(args.replay, cfg, note=lambda text: print(f"note: {text}"),
                            journal=args.journal)
        else:
            strategy_cls = resolve_strategy(args.strategy, flag="--strategy")
            params = parse_params(strategy_cls, args.param)
            frames = _frames(args)
            # as the backtest: every symbol covers the warm-up, a decision and its fill (else
            # neither path trades, and "0 diffs" would prove nothing)
            check_history_length(frames, warmup_bars(strategy_cls, params),
                                 strategy_cls.__name__)
            report = run_parity(frames, strategy_cls, params, cfg).report
    except BtIbkrError as exc:
        logging.getLogger("bt_ibkr.parity").info("parity failed: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = report.to_dict()
    summary.pop("diffs")
    if args.json:
        write_json(report.to_dict(), args.json)
    if args.report:
        write_html(report, args.report)
    first = report.first_divergence
    period = (report.timeline or {}).get("period") or [None, None]
    final = (report.timeline or {}).get("final") or {}
    if period[0]:
        symbols = ", ".join(report.meta.get("symbols") or []) or "recorded symbols"
        print(f"period {str(period[0])[:10]}..{str(period[1])[:10]} on {symbols}; final value "
              f"backtest {final.get('backtest') or 0:,.2f} / ib {final.get('ib') or 0:,.2f}")
    print(f"bars {report.bars}  orders backtest {report.orders_backtest} / ib {report.orders_ib}"
          f"  decision diffs {report.decision_diffs}  order diffs {report.order_diffs}"
          f"  fill diffs {report.fill_diffs}  position diffs {report.position_diffs}"
          f"  max value diff {report.max_value_diff:g} (tolerance {report.tolerance:g})")
    print("first divergence: " + ("none" if first is None else
                                  f"bar {first['bar']} ({first['dt']}) {first['field']}: "
                                  f"backtest {first['backtest']} vs ib {first['ib']}"))
    for flag, path in (("json", args.json), ("report", args.report)):
        if path:
            print(f"{flag}: {path}")
    print(f"log: {log_path}")
    records = [m.get("record") for m in report.meta.get("sessions", [report.meta])
               if m.get("record")]
    if records:
        verified = sum(r == "verified" for r in records)
        print(f"records: {verified} of {len(records)} verified against the journal's digests"
              + "".join(f"; {r}" for r in records if r != "verified"))
    classes = diverged_classes(report)
    classes += [f"record {r}" for r in records if r.startswith("altered")]
    print("diverged: " + (", ".join(classes) if classes else "nothing"))
    return DIVERGED if classes else 0


def diverged_classes(report) -> list[str]:
    """Return what diverged beyond the tolerance: decisions, bars, orders, fills, positions,
    value (every class reaches the exit code, not only the decisions)."""
    out = []
    if report.decision_diffs:
        out.append(f"decisions ({report.decision_diffs})")
    if report.bars_backtest != report.bars_ib:
        out.append(f"bar count ({report.bars_backtest} vs {report.bars_ib})")
    for name in ("order", "fill", "position"):
        n = getattr(report, f"{name}_diffs")
        if n:
            out.append(f"{name}s ({n})")
    final = (report.timeline or {}).get("final") or {}
    scale = max(abs(final.get("backtest") or 0.0), abs(final.get("ib") or 0.0), 1.0)
    if report.max_value_diff > max(1e-6, report.tolerance * scale):
        first = report.first_divergence or {}
        where = (f"first at {first.get('dt')}" if first.get("field") == "value"
                 else "at the latest")
        out.append(f"value ({where}: largest difference {report.max_value_diff:,.2f} beyond "
                   f"the tolerance {report.tolerance:g})")
    return out


if __name__ == "__main__":
    sys.exit(main())
