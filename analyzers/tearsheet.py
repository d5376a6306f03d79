"""Quantstats HTML tearsheets with a benchmark and a regime section, for backtests and live runs.

``write_tearsheet()`` is the library call (it also serves paper/live runs, from their recorded
equity); ``QuantStatsTearsheet`` is the backtrader analyzer that records a run and calls it.
quantstats is imported lazily and its font/pandas warnings are kept off the terminal.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import backtrader as bt
import pandas as pd

from analyzers.equity import gross_exposure
from analyzers.regime import RegimeReport, build_report
from bt_ibkr.metrics import buy_and_hold_returns, to_daily_returns

log = logging.getLogger("bt_ibkr.tearsheet")

REGIME_COLORS = {
    "bull_quiet": "#2e7d32",
    "bull_volatile": "#9ccc65",
    "range": "#bdbdbd",
    "bear_quiet": "#ffb74d",
    "crisis": "#c62828",
    "warmup": "#eceff1",
}


@contextlib.contextmanager
def quiet_reporting() -> Iterator[None]:
    """Silence matplotlib's font lookups, quantstats' prints and pandas/numpy warnings."""
    loggers = [logging.getLogger(n) for n in ("matplotlib", "matplotlib.font_manager", "quantstats")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _naive_daily(returns: pd.Series) -> pd.Series:
    idx = pd.DatetimeIndex(returns.index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    out = pd.Series(returns.to_numpy(dtype="float64"), index=idx.normalize(), name=returns.name)
    return out.groupby(level=0).sum() if out.index.has_duplicates else out


def _regime_section(report: RegimeReport, values: pd.Series) -> str:
    """Return the HTML of the regime section: timeline chart and performance-by-regime table."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.2), dpi=100)
    vals = values.copy()
    vals.index = pd.DatetimeIndex(vals.index)
    ax.plot(vals.index, vals.to_numpy(), color="#263238", linewidth=1.0)
    seen: set[str] = set()
    for start, end, label in report.segments:
        ax.axvspan(
            pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1),
            color=REGIME_COLORS.get(label, "#90a4ae"), alpha=0.35, linewidth=0,
            label=label if label not in seen else None,
        )
        seen.add(label)
    ax.set_title("Portfolio value by regime")
    ax.legend(loc="upper left", fontsize=7, ncol=6, frameon=False)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()

    rows = []
    for label, st in sorted(report.by_regime.items(), key=lambda kv: -kv[1].bars):
        rows.append(
            "<tr>"
            f"<td><span style='color:{REGIME_COLORS.get(label, '#90a4ae')}'>&#9632;</span> "
            f"{html.escape(label)}</td>"
            f"<td>{st.bars}</td><td>{st.time_pct:.1%}</td><td>{st.avg_exposure:.2f}</td>"
            f"<td>{st.total_return:.2%}</td><td>{st.ann_return:.2%}</td>"
            f"<td>{st.ann_volatility:.2%}</td><td>{st.sharpe:.2f}</td><td>{st.max_drawdown:.2%}</td>"
            "</tr>"
        )
    table = (
        "<table id='regime-table' style='width:100%'><thead><tr><th>Regime</th><th>Bars</th>"
        "<th>Time</th><th>Avg exposure</th><th>Return</th><th>Ann. return</th><th>Ann. vol</th>"
        "<th>Sharpe</th><th>Max DD</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    return (
        "<div id='regimes' style='clear:both;padding:20px 0'>"
        "<h4>Regimes</h4>"
        f"<img alt='Regime timeline' style='width:100%' src='data:image/png;base64,{img}'/>"
        "<h4>Performance by regime</h4>"
        "<p style='font-size:11px'>The return from one bar to the next is attributed to the "
        "regime in force when the positions were decided.</p>"
        f"{table}</div>"
    )


def write_tearsheet(
    values: pd.Series,
    output: str | Path,
    *,
    benchmark: pd.Series | None = None,
    benchmark_title: str = "Buy & hold",
    title: str = "bt_ibkr tearsheet",
    regime_report: RegimeReport | None = None,
) -> Path:
    """Write a quantstats HTML tearsheet of an equity curve and return its path.

    Args:
        values: portfolio value per bar (any DatetimeIndex; reduced to daily returns).
        output: HTML file to write (parent folders are created).
        benchmark: benchmark daily returns (a Series, never a ticker: nothing is downloaded).
        regime_report: when given, a section with the regime timeline and the performance by
            regime is added to the report.

    Raises:
        ValueError: the curve is empty or has fewer than two days.
    """
    returns = to_daily_returns(values)
    if len(returns) < 2:
        raise ValueError(f"cannot build a tearsheet from {len(returns)} day(s) of equity: need at least 2")
    returns = _naive_daily(returns).rename("Strategy")
    bench = None
    if benchmark is not None:
        bench = _naive_daily(benchmark).reindex(returns.index).fillna(0.0).rename(benchmark_title)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if bench is not None and float(returns.std()) == 0.0:
        # quantstats' benchmark regressions fail on a flat curve (a run that never traded):
        # write the report without the comparison rather than no report at all.
        log.warning("strategy returns are flat (no trades?): tearsheet written without benchmark")
        bench = None
    with quiet_reporting():
        import quantstats as qs

        qs.reports.html(
            returns,
            benchmark=bench,
            output=str(output),
            title=title,
            strategy_title="Strategy",
            benchmark_title=benchmark_title,
        )
        if regime_report is not None and regime_report.segments:
            section = _regime_section(regime_report, values)
            text = output.read_text(encoding="utf-8")
            marker = "</body>"
            pos = text.rfind(marker)
            text = text[:pos] + section + text[pos:] if pos >= 0 else text + section
            output.write_text(text, encoding="utf-8")
    log.info("tearsheet written to %s", output)
    return output


class QuantStatsTearsheet(bt.Analyzer):
    """Record the run and write a quantstats tearsheet when it stops.

    Params:
        output: HTML path (default ``reports/tearsheet.html``); None records only.
        title: report title.
        benchmark: ``"buyhold"`` (equal-weight buy-and-hold of the strategy's feeds), a Series of
            daily returns, or None.
        regimes: add the regime section (reads ``strategy.regime`` each bar).

    ``get_analysis()`` returns ``{"output": Path | None, "values": Series, "benchmark": Series}``.
    """

    params = (
        ("output", "reports/tearsheet.html"),
        ("title", "bt_ibkr tearsheet"),
        ("benchmark", "buyhold"),
        ("regimes", True),
    )

    def start(self) -> None:
        self._dts: list = []
        self._values: list[float] = []
        self._labels: list[str] = []
        self._exposure: list[float] = []
        self._closes: dict[str, list[float]] = {d._name or f"data{i}": [] for i, d in enumerate(self.strategy.datas)}
        self.result: dict = {"output": None}

    def next(self) -> None:
        value = float(self.strategy.broker.getvalue())
        self._dts.append(self.strategy.datetime.datetime(0))
        self._values.append(value)
        self._labels.append(str(getattr(self.strategy, "regime", "unknown")))
        self._exposure.append(gross_exposure(self.strategy, value))
        for closes, data in zip(self._closes.values(), self.strategy.datas, strict=True):
            closes.append(float(data.close[0]))

    def stop(self) -> None:
        idx = pd.DatetimeIndex(self._dts)
        values = pd.Series(self._values, index=idx, dtype="float64")
        bench = None
        if isinstance(self.p.benchmark, pd.Series):
            bench = self.p.benchmark
        elif self.p.benchmark == "buyhold" and len(values):
            bench = buy_and_hold_returns({k: pd.Series(v, index=idx) for k, v in self._closes.items()})
        report = None
        if self.p.regimes and self._labels:
            report = build_report(self._dts, self._labels, self._values, self._exposure)
        self.result = {"output": None, "values": values, "benchmark": bench, "regimes": report}
        if self.p.output and len(values) >= 2:
            self.result["output"] = write_tearsheet(
                values, self.p.output, benchmark=bench, title=self.p.title, regime_report=report
            )

    def get_analysis(self) -> dict:
        return self.result
