"""The Markdown tables of docs/RESULTS.md (and the README's summary table), from an evaluation
report.
"""


from __future__ import annotations

from bench.evaluation.variants import (
    COST_TABLE,
    COSTS,
    LIVE_DAYS,
    POOL,
    candidates,
)


# ------------------------------------------------------------------------------ tables
def _pct(x: float) -> str:
    return f"{x * 100:.1f}%".replace("-", "−")


def _num(x: float, plus: bool = False) -> str:
    s = f"{x:+.2f}" if plus else f"{x:.2f}"
    return s.replace("-", "−")


def _ci(ci) -> str:
    return f"[{_num(ci[0], True)}, {_num(ci[1], True)}]" if ci else ""


def _diff(d: dict | None) -> str:
    return f"{_num(d['diff'], True)} {_ci(d['ci'])}" if d else "—"


def _main_row(label: str, st: dict) -> str:
    sh = f"{_num(st['sharpe'])} [{_num(st['sharpe_ci'][0])}, {_num(st['sharpe_ci'][1])}]" \
        if st.get("sharpe_ci") else _num(st["sharpe"])
    return (f"| {label} | {sh} | {_diff(st.get('vs_bh'))} | {_diff(st.get('vs_trend'))} | "
            f"{_pct(st['cagr'])} | {_pct(st['max_drawdown'])} | {st['turnover']:.1f} | "
            f"{st['exposure']:.2f} |")


_MAIN_HEAD = ("| series, row | Sharpe [90% CI] | − B&H (same vol) [90% CI] | − trend alone [90% CI] "
              "| CAGR | max DD | turnover/yr | exposure |\n|---|---|---|---|---|---|---|---|")


LABELS = {"default": "**default** (fixed)", "walk-forward": "walk-forward selection",
          "trend": "trend alone", "hold": "hold alone (vol-managed)", "v1": "v1 (previous default)"}


def summary_table(report: dict, cost: float = COSTS[0]) -> str:
    """The headline table (README and docs/RESULTS.md): the default per series at ``cost``."""
    out = [
        "| series, measured | default Sharpe [90% CI] | − B&H same vol [90% CI] | "
        "− trend alone [90% CI] | max DD (B&H same vol) | turnover/yr (v1) | exposure |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in report["series"].items():
        fx = res["costs"][f"{cost:g}"]["fixed"]
        d, v1 = fx["default"], fx["v1"]
        out.append(
            f"| {name} {res['dates'][0][:4]}–{res['dates'][1][:4]} | {_num(d['sharpe'])} "
            f"[{_num(d['sharpe_ci'][0])}, {_num(d['sharpe_ci'][1])}] | {_diff(d['vs_bh'])} | "
            f"{_diff(d['vs_trend'])} | {_pct(d['max_drawdown'])} "
            f"({_pct(d['bh_same_vol']['max_drawdown'])}) | {d['turnover']:.1f} "
            f"({v1['turnover']:.1f}) | {d['exposure']:.2f} |")
    return "\n".join(out) + "\n"


def markdown(report: dict) -> str:
    """The Markdown tables of docs/RESULTS.md (the README copies the summary table)."""
    out: list[str] = [f"### Summary ({COSTS[0]:g} bp a side)\n", summary_table(report)]
    ser = report["series"]
    out.append("### Table 1. Each series: the default and the walk-forward, fixed rows "
               "and benchmarks\n")
    for cost in (f"{c:g}" for c in COSTS):
        out.append(f"**{cost} bp a side**\n")
        out.append(_MAIN_HEAD)
        for name, res in ser.items():
            blk = res["costs"][cost]
            fx = blk["fixed"]
            d0, d1 = res["dates"]
            out.append(f"| **{name}** {d0[:4]}–{d1[:4]} | | | | | | | | |")
            for v in ("default", "trend", "v1"):
                out.append(_main_row(LABELS[v], fx[v]))
            bsv = fx["default"]["bh_same_vol"]
            out.append(_main_row("B&H same vol as the default", bsv))
            wf = blk.get("walk_forward")
            if wf:
                y0, y1 = wf["years"]
                out.append(f"| *{y0}–{y1}, walk-forward years:* | | | | | | | | |")
                for v in ("walk-forward", "default", "trend"):
                    out.append(_main_row(LABELS[v], wf["rows"][v]))
        out.append("")
    out.append("### Table 2. Walk-forward picks (5 bp; count of years)\n")
    out.append("| series | years | " + " | ".join(POOL) + " |")
    out.append("|---|---|" + "---|" * len(POOL))
    for name, res in ser.items():
        wf = res["costs"][f"{COSTS[0]:g}"].get("walk_forward")
        if wf:
            cells = [str(wf["pick_counts"].get(p, 0)) for p in POOL]
            out.append(f"| {name} | {wf['years'][0]}–{wf['years'][1]} | " + " | ".join(cells)
                       + " |")
    out.append("")
    if report.get("battery"):
        out.append(f"### Table 3. Synthetic battery ({COSTS[0]:g} bp; means over seeds)\n")
        out.append("| kind | row | Sharpe | − B&H | wins vs B&H | − trend | wins vs trend | "
                   "max DD | B&H same vol max DD | turnover/yr | exposure |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind, b in report["battery"].items():
            for v in ("default", "trend", "hold", "v1", *candidates()):
                s = b["variants"][v]
                label = LABELS.get(v, v)
                out.append(
                    f"| {kind} ×{s['n']} | {label} | {_num(s['sharpe'])} | "
                    f"{_num(s['vs_bh'], True)} | {s['wins_vs_bh']}/{s['n']} | "
                    f"{_num(s['vs_trend'], True)} | {s['wins_vs_trend']}/{s['n']} | "
                    f"{_pct(s['max_drawdown'])} | {_pct(s['bh_same_vol_max_drawdown'])} | "
                    f"{s['turnover']:.1f} | {s['exposure']:.2f} |")
        out.append("")
        pl = report["battery"].get("SYN_REGIME", {}).get("planted")
        if pl:
            out.append("### Table 4. Planted regimes (SYN_REGIME battery, means over seeds)\n")
            out.append("| | planted turbulent days | planted calm days |")
            out.append("|---|---|---|")
            out.append(f"| share of days | {_pct(pl['turbulent_share'])} | "
                       f"{_pct(1 - pl['turbulent_share'])} |")
            out.append(f"| labelled bull_volatile, bear_quiet or crisis | "
                       f"{_pct(pl['risk_off_in_turbulent'])} | {_pct(pl['risk_off_in_calm'])} |")
            out.append(f"| labelled crisis | {_pct(pl['crisis_in_turbulent'])} | "
                       f"{_pct(pl['crisis_in_calm'])} |")
            out.append(f"| default's mean exposure | {pl['exposure_turbulent']:.2f} | "
                       f"{pl['exposure_calm']:.2f} |")
            out.append(f"| same, no regime layer | {pl['exposure_turbulent_no_regimes']:.2f} "
                       f"| |")
            out.append("")
    out.append(f"### Table 5. Ablation ({COSTS[0]:g} bp): Sharpe, difference to its base "
               "[90% CI], max DD, turnover/yr, exposure\n")
    names = list(ser)
    out.append("| change | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))
    base_rows = {"default": "default", "v1": "v1"}
    for base in base_rows:
        cells = []
        for n in names:
            st = ser[n]["costs"][f"{COSTS[0]:g}"]["fixed"][base]
            cells.append(f"{_num(st['sharpe'])}, {_pct(st['max_drawdown'])}, "
                         f"{st['turnover']:.1f}, {st['exposure']:.2f}")
        out.append(f"| {base} | " + " | ".join(cells) + " |")
        for v, row in ser[names[0]]["ablation"].items():  # the rows this report ran
            b = "default" if "vs_default" in row else "v1"
            if b != base:
                continue
            cells = []
            for n in names:
                st = ser[n]["ablation"][v]
                cells.append(f"{_num(st['sharpe'])} ({_diff(st[f'vs_{b}'])}), "
                             f"{_pct(st['max_drawdown'])}, {st['turnover']:.1f}, "
                             f"{st['exposure']:.2f}")
            out.append(f"| {v} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"### Table 6. The candidates of the decision ({COSTS[0]:g} bp): Sharpe, "
               "− trend alone [90% CI], max DD, turnover/yr, exposure\n")
    out.append("| candidate | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))
    for c in candidates():
        cells = []
        for n in names:
            st = ser[n]["candidates"][c]
            cells.append(f"{_num(st['sharpe'])} ({_diff(st['vs_trend'])}), "
                         f"{_pct(st['max_drawdown'])}, {st['turnover']:.1f}, "
                         f"{st['exposure']:.2f}")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("### Table 7. Cost sensitivity: Sharpe / turnover per year / exposure, all "
               "cost as commission (no slippage)\n")
    real = [n for n in names if not n.startswith("SYN")]
    if not real:
        out.pop()
        out.pop()
        return _tail(out, report)
    out.append("| per side | " + " | ".join(f"{n} {v}" for n in real
                                           for v in ("default", "trend", "v1")) + " |")
    out.append("|---|" + "---|" * (3 * len(real)))
    for c in COST_TABLE:
        cells = []
        for n in real:
            for v in ("default", "trend", "v1"):
                st = ser[n]["cost_table"].get(f"{c:g}", {}).get(v)
                cells.append(f"{_num(st['sharpe'])} / {st['turnover']:.1f} / "
                             f"{st['exposure']:.2f}" if st else "—")
        out.append(f"| {c:g} bp | " + " | ".join(cells) + " |")
    out.append("")
    return _tail(out, report)


def _tail(out: list[str], report: dict) -> str:
    dec = report.get("decision")
    if dec:
        out.append("### Table 8. Decision: worst Sharpe difference against trend alone "
                   f"({COSTS[0]:g} bp)\n")
        out.append("| candidate | worst − trend | on | mean turnover/yr | chosen |")
        out.append("|---|---|---|---|---|")
        for c, r in dec["ranking"].items():
            mark = "**yes**" if c == dec["chosen"] else ""
            out.append(f"| {c} | {_num(r['worst_vs_trend'], True)} | {r['worst_on']} | "
                       f"{r['mean_turnover']:.1f} | {mark} |")
        out.append("")
        out.append(f"Strategy defaults are the chosen candidate: "
                   f"{dec['strategy_defaults_are_the_choice']}.")
        out.append("")
    if report.get("live_warmup_parity"):
        out.append(f"### Table 9. A daily live session's regime ({LIVE_DAYS} calendar days of "
                   "history) against the backtest's, every 20th day\n")
        out.append("| series | rank | days | differ | still warming up |")
        out.append("|---|---|---|---|---|")
        for n, res in report["live_warmup_parity"].items():
            for lab, r in res.items():
                out.append(f"| {n} | {lab} | {r['days']} | {r['differ']} | {r['warmup']} |")
        out.append("")
    if report.get("stale_open_fraction"):
        out.append("Stale opens (open equal to the previous close), share of measured bars: "
                   + "; ".join(f"{n} {v['all']:.0%} (first half {v['first_half']:.0%}, second "
                               f"half {v['second_half']:.0%})"
                               for n, v in report["stale_open_fraction"].items()) + ".")
    return "\n".join(out).rstrip() + "\n"
