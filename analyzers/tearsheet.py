"""Quantstats HTML tearsheets with a benchmark and a regime section, for backtests and live runs.

``write_tearsheet()`` is the library call (it also serves paper/live runs, from their recorded
equity); ``QuantStatsTearsheet`` is the backtrader analyzer that records a run and calls it.
quantstats is imported lazily and its font/pandas warnings are kept off the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import backtrader as bt
import pandas as pd

from analyzers.equity import gross_exposure
from analyzers.quantstats_fixes import clean_report_html, report_context, skip_unused_charts
from analyzers.regime import RegimeReport, build_report
from analyzers.sections import (
    REGIME_COLORS,
    ablation_section,
    eoy_chart_svg,
    regime_section,
    summary_table,
)
from bt_ibkr.metrics import buy_and_hold_returns, period_returns
from bt_ibkr.redaction import write_text

__all__ = ["REGIME_COLORS", "QuantStatsTearsheet", "quiet_reporting", "write_tearsheet"]

log = logging.getLogger("bt_ibkr.tearsheet")


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


_EOY_MARK = "<!--bt_ibkr:eoy-->"
_SUMMARY_MARK = "<!--bt_ibkr:summary-->"
_SECTIONS_MARK = "<!--bt_ibkr:sections-->"
_SECTIONS_CSS = (
    "<style>#bt-sections{clear:both;padding-top:10px}#bt-sections h3{margin-top:20px}"
    "#bt-sections p{color:#555}#regime-chart svg,#eoy_returns svg{margin:0}"
    "#bt-sections table{margin-bottom:20px}</style>"
)


def _template() -> str:
    """Return quantstats' report template with bt_ibkr's markers in its layout.

    The EOY chart slot gets our chart; the run summary opens the right column; extra sections
    (regimes, ablation) go full-width inside the page container, below both columns.
    """
    import quantstats as qs

    tpl = (Path(qs.__file__).parent / "report.html").read_text(encoding="utf-8")
    tpl = tpl.replace("{{eoy_returns}}", _EOY_MARK)
    tpl = tpl.replace('<div id="right">', '<div id="right">' + _SUMMARY_MARK, 1)
    body = tpl.rfind("</body>")
    container_end = tpl.rfind("</div>", 0, body)
    if container_end < 0:  # unknown template: still inside a container, not loose in <body>
        return tpl[:body] + f"<div class='container'>{_SECTIONS_MARK}</div>" + tpl[body:]
    return tpl[:container_end] + _SECTIONS_MARK + tpl[container_end:]


def write_tearsheet(
    values: pd.Series,
    output: str | Path,
    *,
    benchmark: pd.Series | None = None,
    benchmark_title: str = "Buy & hold",
    title: str = "bt_ibkr tearsheet",
    regime_report: RegimeReport | None = None,
    warmup_bars: int = 0,
    summary_rows: list[tuple[str, str, str]] | None = None,
    ablation: list[dict] | None = None,
    ablation_note: str = "",
    parameters: dict[str, str] | None = None,
    notes: list[str] | None = None,
    returns: pd.Series | None = None,
) -> Path:
    """Write a quantstats HTML tearsheet of an equity curve and return its path.

    The report covers the reporting period (bt_ibkr.metrics): ``values`` without its first
    ``warmup_bars`` bars, reduced to daily returns by :func:`bt_ibkr.metrics.period_returns`,
    the same call the backtest's summary uses, so the page and the terminal agree.

    Args:
        values: portfolio value per bar (any DatetimeIndex).
        output: HTML file to write (parent folders are created).
        benchmark: benchmark daily returns (a Series, never a ticker: nothing is downloaded),
            reindexed to the period's days.
        regime_report: adds a section with the regime timeline and performance by regime.
        warmup_bars: bars before the reporting period (the strategy's warm-up).
        summary_rows: (metric, strategy, benchmark) rows shown as "Run summary" at the top of
            the right column (the terminal's table).
        ablation: rows of an ablation report (name, sharpe, cagr, max_drawdown, volatility,
            exposure, turnover) shown as a section; ``ablation_note`` is printed above it.
        parameters: shown in the report's subtitle (e.g. costs).
        returns: the period's daily returns, when the caller has them (a stitched
            out-of-sample curve, whose first day's return is real, not a base of 0): the page
            then covers exactly their days; ``values`` and ``warmup_bars`` are then ignored
            except by the regime section.
        notes: lines under the run summary that say what the figures leave out (dividends,
            interest on idle cash, the risk-free rate) or that the asked range was cut.

    Raises:
        ValueError: the period has fewer than two days of equity.
    """
    from bt_ibkr.mpl_cache import matplotlib_cache_dir

    matplotlib_cache_dir()  # before matplotlib's first import: its font list built once
    if returns is None:
        returns = period_returns(values, warmup_bars)
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
    with quiet_reporting(), report_context(), skip_unused_charts(), \
            tempfile.TemporaryDirectory() as tmp:
        import quantstats as qs

        template = Path(tmp) / "report.html"
        template.write_text(_template(), encoding="utf-8")
        # quantstats writes its page unmasked: into the temporary folder, never at ``output``
        page = Path(tmp) / "page.html"
        qs.reports.html(
            returns,
            benchmark=bench,
            output=str(page),
            title=title,
            strategy_title="Strategy",
            benchmark_title=benchmark_title,
            template_path=str(template),
            match_dates=False,  # the period is ours: quantstats must not trim leading zeros
            parameters=parameters or {},
        )
        sections = ""
        if regime_report is not None and regime_report.segments:
            kept = pd.Series(values).iloc[warmup_bars:]
            sections += regime_section(regime_report, kept)
        if ablation:
            sections += ablation_section(ablation, ablation_note)
        text = clean_report_html(page.read_text(encoding="utf-8"), title=title,
                                 benchmark=benchmark_title)
        text = text.replace("\ufe6a", "%")  # quantstats' "CAGR\ufe6a" (small percent sign)
        text = text.replace(
            _EOY_MARK,
            eoy_chart_svg(returns, bench, strategy_title="Strategy",
                          benchmark_title=benchmark_title),
        )
        text = text.replace(
            _SUMMARY_MARK,
            (summary_table(summary_rows, benchmark_title=benchmark_title, notes=notes or [])
             if summary_rows else ""),
        )
        text = text.replace(
            _SECTIONS_MARK, f"{_SECTIONS_CSS}<div id='bt-sections'>{sections}</div>" if sections else ""
        )
        write_text(text, output)  # the environment's secrets masked
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
        warmup_bars: bars before the reporting period (e.g.
            ``bt_ibkr.backtest.warmup_bars(RegimeAwareEnsemble)``); the report, its benchmark
            and its regime section start at the close of the next bar. Default 0: all bars.

    ``get_analysis()`` returns ``{"output": Path | None, "values": Series, "benchmark": Series,
    "regimes": RegimeReport | None}`` (values: every bar; benchmark and regimes: the period).
    """

    params = (
        ("output", "reports/tearsheet.html"),
        ("title", "bt_ibkr tearsheet"),
        ("benchmark", "buyhold"),
        ("regimes", True),
        ("warmup_bars", 0),
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
        w = max(0, int(self.p.warmup_bars))
        bench = None
        if isinstance(self.p.benchmark, pd.Series):
            bench = self.p.benchmark
        elif self.p.benchmark == "buyhold" and len(values) > w:
            bench = buy_and_hold_returns(
                {k: pd.Series(v[w:], index=idx[w:]) for k, v in self._closes.items()}
            )
        report = None
        if self.p.regimes and len(self._labels) > w:
            report = build_report(self._dts[w:], self._labels[w:], self._values[w:], self._exposure[w:])
        self.result = {"output": None, "values": values, "benchmark": bench, "regimes": report}
        if self.p.output and len(values) - w >= 2:
            self.result["output"] = write_tearsheet(
                values, self.p.output, benchmark=bench, title=self.p.title, regime_report=report,
                warmup_bars=w,
            )

    def get_analysis(self) -> dict:
        return self.result
