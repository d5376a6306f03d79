"""RegimeAwareEnsemble behaviour a user would notice: 2008, params, caps, ablation modes, band,
sizing, logging."""

from __future__ import annotations

import collections
import logging

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from bt_ibkr.errors import ConfigError
from strategies import (
    DEFAULT_CAPS,
    DEFAULT_EXPOSURE,
    DEFAULT_WEIGHTS,
    REGIMES,
    SLEEVES,
    V1_CAPS,
    V1_WEIGHTS,
    RegimeAwareEnsemble,
    resolve_table,
    warmup_bars,
)
from strategies.regime import WARMUP

WARM = warmup_bars()  # 271
# the previous default's sleeve switching (no exposure scaling: its caps do the risk cutting)
V1_TABLE = {"weights": V1_WEIGHTS, "caps": V1_CAPS, "exposure": {r: 1.0 for r in REGIMES}}


class Probe(RegimeAwareEnsemble):
    """Records every bar's state and every order the strategy sends (in sending order)."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.sent = []
        self.decisions = []  # (regime, signals, realized vol, target) per feed decision

    def decide(self, f, regime, signals):
        target = super().decide(f, regime, signals)
        self.decisions.append((regime, signals, f.clf.realized_vol, target))
        return target

    def next(self):
        super().next()
        self.rows.append(
            (
                self.datas[0].datetime.date(0),
                self.regime,
                dict(self.targets),
                self.broker.getvalue(),
            )
        )

    def _record(self, data, size):
        name = data._name
        pos = self.getposition(data).size
        cur = pos * data.close[0] / self.broker.getvalue()
        self.sent.append((len(self), name, size, self.targets[name], cur))

    def buy(self, data=None, size=None, **kwargs):
        self._record(data, size)
        return super().buy(data=data, size=size, **kwargs)

    def sell(self, data=None, size=None, **kwargs):
        self._record(data, -size)
        return super().sell(data=data, size=size, **kwargs)


def run(frames: dict[str, pd.DataFrame], cash: float = 1_000_000.0, **params) -> Probe:
    cerebro = bt.Cerebro(stdstats=False)
    for name, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
    cerebro.broker.setcash(cash)
    cerebro.addstrategy(Probe, **params)
    return cerebro.run()[0]


def _max_drawdown(values: pd.Series) -> float:
    return float((values / values.cummax() - 1.0).min())


# ------------------------------------------------------------------------------ 2007-2009
def test_cuts_exposure_in_the_2008_crisis(spx):
    frame = spx.loc[:"2009-12-31"]  # 1999-2006 is the warm-up history
    s = run({"SPX": frame})
    idx = pd.to_datetime([r[0] for r in s.rows])
    regime = pd.Series([r[1] for r in s.rows], index=idx)
    target = pd.Series([r[2]["SPX"] for r in s.rows], index=idx)
    value = pd.Series([r[3] for r in s.rows], index=idx)

    late_2008 = regime["2008-09-15":"2008-12-31"]
    assert (late_2008 == "crisis").mean() > 0.9
    # crisis holds cash: no sleeve buys the falling market
    assert (target[regime == "crisis"] == 0.0).all() and (regime == "crisis").sum() > 100
    assert (target["2008-09-15":"2009-03-31"] == 0.0).all()

    dd_strategy = _max_drawdown(value["2007":"2009"])
    dd_buy_hold = _max_drawdown(frame["close"]["2007":"2009"])
    assert dd_buy_hold < -0.5  # the S&P 500 lost ~57% peak to trough
    assert dd_strategy > -0.25  # the strategy loses far less
    assert dd_strategy > dd_buy_hold / 2


def test_warmup_holds_cash(spx):
    s = run({"SPX": spx.iloc[:400]})
    warm = [r for r in s.rows if r[1] == WARMUP]
    assert len(warm) == WARM == 271
    assert all(r[2]["SPX"] == 0.0 for r in warm)
    assert s.sent and min(bar for bar, *_ in s.sent) > WARM
    assert {r[1] for r in s.rows[WARM:]} <= set(REGIMES)


# ------------------------------------------------------------------------------ params
def test_param_interface():
    names = RegimeAwareEnsemble.param_names()
    defaults = RegimeAwareEnsemble.param_defaults()
    assert names[0] == "sma_long" and set(names) == set(defaults)
    for key in ("band", "target_vol", "max_leverage", "cash_buffer", "weights", "caps", "use_hmm",
                "sleeves", "use_regimes", "decision_delay", "exposure", "band_relative",
                "crisis_immediate", "meanrev_min_hold", "rebound_stop_low", "rebound_max_hold"):
        assert key in names
    assert isinstance(defaults["target_vol"], float) and defaults["target_vol"] == 0.12
    assert isinstance(defaults["band"], float) and defaults["band"] == 0.15
    assert defaults["band_relative"] is True and defaults["crisis_immediate"] is True
    assert isinstance(defaults["sma_long"], int) and defaults["sma_long"] == 200
    assert defaults["use_hmm"] is False
    assert isinstance(defaults["weights"], dict) and set(defaults["weights"]) == set(REGIMES)
    assert defaults["caps"] == DEFAULT_CAPS and defaults["exposure"] == DEFAULT_EXPOSURE
    assert defaults["sleeves"] == "all" and defaults["use_regimes"] is True
    assert defaults["decision_delay"] == 0 and defaults["slope_threshold"] == 0.0
    assert defaults["vol_rank_window"] == 252 and defaults["vol_rank_min"] is None
    assert defaults["hmm_window"] == 1260
    assert (defaults["meanrev_min_hold"], defaults["rebound_stop_low"],
            defaults["rebound_max_hold"]) == (5, 10, 5)
    assert RegimeAwareEnsemble.SLEEVES == SLEEVES == (
        "trend", "breakout", "meanrev", "rebound", "hold")


def test_default_table_is_risk_scaling_with_cash_in_crisis():
    t = resolve_table(DEFAULT_WEIGHTS, DEFAULT_CAPS, exposure=DEFAULT_EXPOSURE)
    trend_only = (1.0, 0.0, 0.0, 0.0, 0.0)
    for r in REGIMES:  # the same sleeves in every regime: the regime only scales the position
        assert t.rows[r] == (trend_only, 1.0, 0.0 if r == "crisis" else 1.0)
    assert resolve_table().rows == t.rows


def test_weight_table_overrides_and_errors():
    t = resolve_table({"crisis": {"rebound": 1.0}}, {"bull_quiet": 0.5}, exposure={"range": 0.5})
    assert t.rows["crisis"] == ((1.0, 0.0, 0.0, 1.0, 0.0), 1.0, 0.0)  # only 'rebound' changed
    assert t.rows["bull_quiet"] == ((1.0, 0.0, 0.0, 0.0, 0.0), 0.5, 1.0)
    assert t.rows["range"] == ((1.0, 0.0, 0.0, 0.0, 0.0), 1.0, 0.5)
    assert t.rows[WARMUP] == ((0.0,) * 5, 0.0, 0.0)
    v1 = resolve_table(V1_WEIGHTS, V1_CAPS)
    assert v1.rows["bull_quiet"] == ((0.5, 0.3, 0.2, 0.0, 0.0), 1.0, 1.0)
    assert v1.rows["crisis"] == ((0.0, 0.0, 0.0, 1.0, 0.0), 0.25, 0.0)
    with pytest.raises(ConfigError, match="unknown regime 'bull'"):
        resolve_table({"bull": {"trend": 1.0}}, None)
    with pytest.raises(ConfigError, match="unknown sleeve 'momentum'"):
        resolve_table({"range": {"momentum": 1.0}}, None)
    with pytest.raises(ConfigError, match=r"caps\['crisis'\]"):
        resolve_table(None, {"crisis": -1})
    with pytest.raises(ConfigError, match=r"exposure\['range'\]"):
        resolve_table(exposure={"range": "half"})
    with pytest.raises(ConfigError, match="exposure: unknown regime 'calm'"):
        resolve_table(exposure={"calm": 1.0})


def test_sleeve_selection_renormalises_each_row():
    t = resolve_table(V1_WEIGHTS, V1_CAPS, sleeves="trend,meanrev")
    assert t.sleeves == ("trend", "meanrev")
    assert t.rows["bull_quiet"][0] == pytest.approx((0.5 / 0.7, 0, 0.2 / 0.7, 0, 0))
    assert t.rows["range"][0] == pytest.approx((0.25, 0, 0.75, 0, 0))
    assert t.rows["crisis"][0] == (0.0,) * 5  # no weight on either sleeve: cash
    assert resolve_table(V1_WEIGHTS, V1_CAPS, sleeves=("meanrev", "trend")).rows == t.rows
    assert resolve_table(sleeves="all").rows == resolve_table().rows
    assert all(resolve_table(sleeves="hold").rows[r][0] == (0.0,) * 5 for r in REGIMES)
    with pytest.raises(ValueError, match="unknown sleeve 'momentum'; valid: trend, breakout"):
        resolve_table(sleeves="trend,momentum")
    with pytest.raises(ValueError, match="selects nothing"):
        resolve_table(sleeves=" , ")


def test_static_row_is_the_table_average():
    t = resolve_table(V1_WEIGHTS, V1_CAPS, use_regimes=False)
    avg = tuple(sum(V1_WEIGHTS[r][s] for r in REGIMES) / 5 for s in SLEEVES)
    assert t.rows["bull_quiet"][0] == pytest.approx(avg)
    assert {t.rows[r] for r in REGIMES} == {t.rows["crisis"]}  # one row for every regime
    assert t.rows["crisis"][1:] == (float("inf"), 1.0)  # no regime cap, no regime exposure
    d = resolve_table(use_regimes=False)
    assert d.rows["crisis"] == ((1.0, 0.0, 0.0, 0.0, 0.0), float("inf"), 1.0)
    for s in SLEEVES:  # a single sleeve alone gets weight 1, even one the table never uses
        w, _, _ = resolve_table(sleeves=s, use_regimes=False).rows["range"]
        assert w == tuple(1.0 if x == s else 0.0 for x in SLEEVES)
    with pytest.raises(ConfigError, match="use_regimes"):
        resolve_table(use_regimes="no")


def test_bad_param_fails_at_start(spx):
    with pytest.raises(ConfigError, match="cash_buffer"):
        run({"SPX": spx.iloc[:50]}, cash_buffer=1.5)
    with pytest.raises(ConfigError, match="min_dwell"):
        run({"SPX": spx.iloc[:50]}, min_dwell=0)
    with pytest.raises(ConfigError, match="decision_delay"):
        run({"SPX": spx.iloc[:50]}, decision_delay=-1)
    with pytest.raises(ValueError, match="unknown sleeve 'carry'; valid: trend"):
        run({"SPX": spx.iloc[:50]}, sleeves="trend,carry")


def test_zero_caps_never_trade(spx):
    s = run({"SPX": spx.iloc[:1500]}, caps={r: 0.0 for r in REGIMES})
    assert s.sent == []
    assert s.rows[-1][3] == 1_000_000.0


# ------------------------------------------------------------------------------ sizing
def _expected_target(row, signals, rv, tv=0.12, buffer=0.02, max_lev=1.0):
    weights, cap, exposure = row
    blend = sum(w * x for w, x in zip(weights, signals, strict=True))
    if blend <= 0.0:
        return 0.0
    return min(cap, exposure * (1.0 - buffer) * min(max_lev, blend * tv / rv))


@pytest.fixture(scope="module")
def full_runs(spx, ndx):
    return {"SPX": run({"SPX": spx}), "IXIC": run({"IXIC": ndx}),
            "SPX v1 table": run({"SPX": spx}, **V1_TABLE),
            "IXIC v1 table": run({"IXIC": ndx}, **V1_TABLE)}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SPX", "IXIC"])
def test_caps_are_ceilings_on_the_final_target_on_every_bar(full_runs, name):
    """With the sleeve-switching table (caps below 1): every bar's target is the formula, the
    cap a ceiling on it after vol targeting, exposure and the cash buffer."""
    s = full_runs[f"{name} v1 table"]
    rows = resolve_table(**V1_TABLE).rows
    assert len(s.decisions) == len(s.rows)
    binding = collections.Counter()
    for (regime, signals, rv, target), row in zip(s.decisions, s.rows, strict=True):
        cap = rows[regime][1]
        assert target <= cap  # after vol targeting and the cash buffer: the final number
        assert target == pytest.approx(_expected_target(rows[regime], signals, rv), rel=1e-12)
        assert row[2][name] == target
        binding[regime] += target == cap
    # the caps below the cash buffer's 0.98 are not dead: each one binds on some bars
    for regime in ("bull_volatile", "range", "bear_quiet", "crisis"):
        assert binding[regime] > 0, regime


@pytest.mark.parametrize("name", ["SPX", "IXIC"])
def test_default_targets_follow_the_formula_and_crisis_holds_cash(full_runs, name):
    s = full_runs[name]
    rows = resolve_table().rows
    acted = collections.Counter()
    for regime, signals, rv, target in s.decisions:
        assert target == pytest.approx(_expected_target(rows[regime], signals, rv), rel=1e-12)
        acted[regime] += target > 0.0
    for regime in ("bull_quiet", "bull_volatile", "range", "bear_quiet"):
        assert acted[regime] >= 10, (regime, dict(acted))
    assert acted["crisis"] == 0 and acted[WARMUP] == 0


@pytest.mark.parametrize("name", ["SPX", "IXIC"])
def test_every_regime_row_of_the_v1_table_acts_on_real_data(full_runs, name):
    s = full_runs[f"{name} v1 table"]
    acted = collections.defaultdict(int)
    for regime, _signals, _rv, target in s.decisions:
        acted[regime] += target > 0.0
    for regime in REGIMES:
        assert acted[regime] >= 10, (regime, dict(acted))


@pytest.mark.slow
def test_vol_targeting_scales_targets(spx):
    # caps out of the way: the target is proportional to target_vol until max_leverage binds
    no_caps = {r: 10.0 for r in REGIMES}
    lo = run({"SPX": spx.iloc[:2500]}, target_vol=0.05, caps=no_caps)
    hi = run({"SPX": spx.iloc[:2500]}, target_vol=0.10, caps=no_caps)
    t_lo = np.array([r[2]["SPX"] for r in lo.rows])
    t_hi = np.array([r[2]["SPX"] for r in hi.rows])
    np.testing.assert_allclose(t_hi, np.minimum(2 * t_lo, 0.98), rtol=1e-12, atol=1e-15)
    assert (t_hi > 0).sum() > 500
    # no leverage: even a huge vol target never asks for more than (1 - cash_buffer)
    big = run({"SPX": spx.iloc[:2500]}, target_vol=5.0)
    assert max(r[2]["SPX"] for r in big.rows) == pytest.approx(0.98)


# ------------------------------------------------------------------------------ ablation modes
def test_a_sleeve_alone_is_its_signal_with_vol_targeting(spx):
    s = run({"SPX": spx.iloc[:3000]}, sleeves="trend", use_regimes=False)
    trend_on = 0
    for regime, signals, rv, target in s.decisions:
        want = 0.98 * min(1.0, 0.12 / rv) if signals[0] and regime != WARMUP else 0.0
        assert target == pytest.approx(want, rel=1e-12)
        trend_on += signals[0] > 0
    assert trend_on > 1000
    # regimes are still computed and reported (for attribution), they just change nothing
    assert {r[1] for r in s.rows} == set(REGIMES) | {WARMUP}


@pytest.mark.slow
def test_static_weights_ignore_the_regime(spx):
    # the hold sleeve is long in every regime: the regime layer's cash in crisis shows at once
    hold = {r: {"trend": 0.0, "hold": 1.0} for r in REGIMES}
    scaled = run({"SPX": spx.iloc[:3000]}, weights=hold)
    static = run({"SPX": spx.iloc[:3000]}, weights=hold, use_regimes=False)
    row = resolve_table(hold, use_regimes=False).rows["range"]
    crisis_long = 0
    for (regime, signals, rv, target), (_r, _s, _v, t_scaled) in zip(
            static.decisions, scaled.decisions, strict=True):
        if regime == WARMUP:
            assert target == 0.0
            continue
        assert target == pytest.approx(_expected_target(row, signals, rv))
        if regime == "crisis":
            assert t_scaled == 0.0  # the regime layer: cash in crisis
            crisis_long += target > 0.0  # without it: long
    assert crisis_long > 50


@pytest.mark.parametrize("delay", [1, 3])
def test_decision_delay_acts_on_the_decision_k_bars_earlier(spx, delay):
    base = run({"SPX": spx.iloc[:1500]})
    late = run({"SPX": spx.iloc[:1500]}, decision_delay=delay)
    b = [(r[1], r[2]["SPX"]) for r in base.rows]
    d = [(r[1], r[2]["SPX"]) for r in late.rows]
    assert d[:delay] == [(WARMUP, 0.0)] * delay
    assert d[delay:] == b[:-delay]
    assert late.decisions == base.decisions  # what is decided does not change, only when
    first_buy = min(bar for bar, _n, size, *_ in base.sent if size > 0)
    assert min(bar for bar, _n, size, *_ in late.sent if size > 0) == first_buy + delay


@pytest.mark.slow
@pytest.mark.parametrize("relative", [True, False])
def test_band_limits_turnover_and_every_order_is_justified(spx, relative):
    counts = {}
    for band in (0.02, 0.10, 0.30):
        s = run({"SPX": spx.iloc[:3000]}, band=band, band_relative=relative)
        counts[band] = len(s.sent)
        for _bar, _name, size, target, cur in s.sent:
            assert size == int(size) and size != 0
            limit = band * target if relative else band
            assert abs(target - cur) > limit or (target == 0.0 and cur != 0.0)
    assert counts[0.02] > counts[0.10] > counts[0.30] > 0


@pytest.mark.slow
def test_relative_band_resizes_small_positions(spx):
    """A relative band trades a small holding in proportion to it: it resizes by less than an
    absolute 0.10 band ever would."""
    s = run({"SPX": spx.iloc[:3000]}, target_vol=0.03)  # small targets
    assert max(r[2]["SPX"] for r in s.rows) < 0.6
    sent = [(t, c) for _b, _n, _size, t, c in s.sent]
    assert any(c == 0.0 and t > 0.0 for t, c in sent)  # entries from flat
    assert any(c > 0.0 and 0.0 < abs(t - c) < 0.10 for t, c in sent)  # resizes under 0.10
    absolute = run({"SPX": spx.iloc[:3000]}, target_vol=0.03, band=0.10, band_relative=False)
    assert all(abs(t - c) > 0.10 or t == 0.0 for _b, _n, _s, t, c in absolute.sent)
    with pytest.raises(ConfigError, match="band_relative"):
        run({"SPX": spx.iloc[:50]}, band_relative="yes")


@pytest.mark.slow
def test_sells_are_sent_before_buys(spx, ndx):
    s = run({"SPX": spx, "IXIC": ndx}, band=0.02)
    by_bar = collections.defaultdict(list)
    for bar, _name, size, _t, _c in s.sent:
        by_bar[bar].append(size)
    mixed = [sizes for sizes in by_bar.values() if min(sizes) < 0 < max(sizes)]
    assert len(mixed) >= 5  # rebalancing out of one index into the other happens
    for sizes in mixed:
        first_buy = next(i for i, x in enumerate(sizes) if x > 0)
        assert all(x > 0 for x in sizes[first_buy:]), sizes


# ------------------------------------------------------------------------------ logging
def _gap_up_frame(n: int = 400) -> pd.DataFrame:
    """Rising prices that open 1% above the previous close every day."""
    rng = np.random.default_rng(2)
    close = 100 * np.exp(np.cumsum(0.001 + rng.normal(0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1] * 1.01]
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.001,
            "low": np.minimum(open_, close) * 0.999,
            "close": close,
            "volume": 1e6,
        },
        index=pd.bdate_range("2020-01-01", periods=n),
    )


def test_margin_rejection_is_logged(caplog):
    caplog.set_level(logging.WARNING, logger="bt_ibkr.strategy")
    # no cash buffer + full target (caps at 1 in every regime): the buy sized at the close
    # cannot be paid at a gapped open
    full = {r: 1.0 for r in REGIMES}
    s = run({"GAP": _gap_up_frame()}, cash=100_000.0, cash_buffer=0.0, target_vol=10.0, caps=full)
    assert s.sent, "the strategy should have tried to buy"
    msgs = [r for r in caplog.records if r.name == "bt_ibkr.strategy"]
    assert msgs and all(r.levelno == logging.WARNING for r in msgs)
    assert "insufficient cash/margin" in msgs[0].getMessage()
    assert "GAP" in msgs[0].getMessage()
    assert s.getposition(s.datas[0]).size == 0  # every attempt was refused


def test_cash_buffer_avoids_the_rejection(caplog):
    caplog.set_level(logging.WARNING, logger="bt_ibkr.strategy")
    s = run({"GAP": _gap_up_frame()}, cash=100_000.0, cash_buffer=0.02, target_vol=10.0)
    assert not [r for r in caplog.records if r.name == "bt_ibkr.strategy"]
    assert s.getposition(s.datas[0]).size > 0


# ------------------------------------------------------------------------------ live gating
class _ReplayedLiveFeed(bt.feeds.PandasData):
    """A 'live' feed over a frame: backfill until bar ``live_from``, then reports LIVE."""

    params = (("live_from", 1000),)

    def islive(self):
        return True

    def _load(self):
        ok = super()._load()
        if ok and len(self) == self.p.live_from:
            self.put_notification(self.LIVE)
        return ok


def test_live_feed_trades_only_after_live_status(spx):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(_ReplayedLiveFeed(dataname=spx.iloc[:1600], live_from=1000), name="SPX")
    cerebro.broker.setcash(1_000_000.0)
    cerebro.addstrategy(Probe)
    s = cerebro.run()[0]
    assert len(s.rows) == 1600
    warm = sum(r[1] == WARMUP for r in s.rows)
    assert warm == WARM  # the backfill bars still build the regime state
    assert s.sent and min(bar for bar, *_ in s.sent) >= 1000
    assert any(r[2]["SPX"] > 0 for r in s.rows[WARM:1000])  # it wanted exposure before LIVE


def test_bad_bar_is_skipped_with_a_warning(spx, caplog):
    caplog.set_level(logging.WARNING, logger="bt_ibkr.strategy")
    frame = spx.iloc[:600].copy()
    frame.iloc[400, frame.columns.get_loc("close")] = np.nan
    s = run({"SPX": frame})
    msgs = [r.getMessage() for r in caplog.records if r.name == "bt_ibkr.strategy"]
    assert len(msgs) == 1 and "bar skipped" in msgs[0] and "nan" in msgs[0]
    assert s.rows[-1][1] in REGIMES


# ------------------------------------------------------------------------------ sleeves
def _naive_sleeves(df: pd.DataFrame, min_hold: int = 5, stop_low: int = 10,
                   max_hold: int = 5) -> pd.DataFrame:
    """The sleeves written the slow, obvious way with pandas (reference)."""
    c, h, lo = df["close"], df["high"], df["low"]
    sma200 = c.rolling(200).mean()
    sma50 = c.rolling(50).mean()
    sma5 = c.rolling(5).mean()
    hi55 = h.rolling(55).max().shift(1)  # PREVIOUS 55 bars
    lo20 = lo.rolling(20).min().shift(1)
    low_close = c.rolling(stop_low).min().shift(1) if stop_low else None  # PREVIOUS closes
    ch = c.diff()
    gain, loss = ch.clip(lower=0), (-ch).clip(lower=0)
    ag, al = gain.iloc[1:3].mean(), loss.iloc[1:3].mean()
    rsi = [np.nan, np.nan]
    for i in range(2, len(c)):
        if i > 2:
            ag = (ag + gain.iloc[i]) / 2
            al = (al + loss.iloc[i]) / 2
        rsi.append(100.0 if al == 0 and ag > 0 else 100 - 100 / (1 + ag / al) if al else 50.0)
    rsi = pd.Series(rsi, index=c.index)
    trend = ((sma50 > sma200) & sma200.notna()).astype(float)
    brk, mr, rb, b, m, k = [], [], [], 0.0, 0.0, 0.0
    m_in = k_in = 0  # bar of entry
    stopped = False
    for i in range(len(c)):
        if b == 0.0 and c.iloc[i] > hi55.iloc[i]:
            b = 1.0
        elif b == 1.0 and c.iloc[i] < lo20.iloc[i]:
            b = 0.0
        above5 = c.iloc[i] > sma5.iloc[i]
        oversold = rsi.iloc[i] < 10
        if m == 1.0:
            if above5 and i - m_in >= min_hold:
                m = 0.0
        elif oversold and c.iloc[i] > sma200.iloc[i]:
            m, m_in = 1.0, i
        if k == 1.0:
            new_low = low_close is not None and c.iloc[i] < low_close.iloc[i]
            timed_out = max_hold and i - k_in >= max_hold
            if above5 or new_low or timed_out:
                k = 0.0
                stopped = not above5
        elif stopped:
            stopped = not above5
        elif oversold and c.iloc[i] < sma200.iloc[i]:
            k, k_in = 1.0, i
        brk.append(b)
        mr.append(m)
        rb.append(k)
    hold = sma200.notna().astype(float)
    return pd.DataFrame(
        {"trend": trend, "breakout": brk, "meanrev": mr, "rebound": rb, "hold": hold},
        index=c.index,
    )


@pytest.mark.parametrize("params", [
    {},  # the defaults: meanrev held >= 5 bars, rebound stopped at a new 10-day low or 5 bars
    {"meanrev_min_hold": 1, "rebound_stop_low": 0, "rebound_max_hold": 0},  # v1's rules
    {"meanrev_min_hold": 3, "rebound_stop_low": 5, "rebound_max_hold": 0},
])
def test_sleeves_match_a_naive_pandas_version(spx, params):
    from strategies import RegimeClassifier, SleeveParams, Sleeves

    df = spx.iloc[:2500]
    clf, sl = RegimeClassifier(), Sleeves(SleeveParams(**params))
    rows = []
    for c, h, lo in zip(df["close"], df["high"], df["low"], strict=True):
        clf.update(c)
        rows.append(sl.update(c, h, lo, clf.sma))
    got = pd.DataFrame(rows, columns=list(SLEEVES), index=df.index)
    sp = SleeveParams(**params)
    want = _naive_sleeves(df, sp.meanrev_min_hold, sp.rebound_stop_low, sp.rebound_max_hold)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # each sleeve but hold switches many times: the comparison is not between constant series
    flips = got.diff().abs().sum()
    assert (flips.drop("hold") >= 5).all() and flips["hold"] == 1


def test_rebound_stops_bound_each_trade(spx):
    """The rebound sleeve buys falling markets; its stops end every trade within
    ``rebound_max_hold`` bars, and a stopped trade does not re-enter until a close above SMA(5).
    """
    from strategies import RegimeClassifier, SleeveParams, Sleeves

    def lengths(**p):
        clf, sl, out, run_len = RegimeClassifier(), Sleeves(SleeveParams(**p)), [], 0
        for c, h, lo in zip(spx["close"], spx["high"], spx["low"], strict=True):
            clf.update(c)
            on = sl.update(c, h, lo, clf.sma)[3]
            if on:
                run_len += 1
            elif run_len:
                out.append(run_len)
                run_len = 0
        return out

    stopped, unstopped = lengths(), lengths(rebound_stop_low=0, rebound_max_hold=0)
    assert max(stopped) <= 5 < max(unstopped)
    assert len(stopped) > 20


@pytest.mark.slow
def test_a_contract_multiplier_sizes_in_contracts(spx):
    """With a multiplier of 50 (an E-mini's), the first order is the share count divided by 50,
    floored: the Strategy sizes from the broker's multiplier, never 50 times the exposure."""
    def first_buy(mult: float) -> int:
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=spx), name="ES")
        cerebro.broker.setcash(10_000_000.0)
        cerebro.broker.setcommission(commission=0.0, mult=mult)
        cerebro.addstrategy(Probe)
        strat = cerebro.run()[0]
        return next(size for _bar, _name, size, _t, _c in strat.sent if size > 0)

    shares, contracts = first_buy(1.0), first_buy(50.0)
    assert shares > 50 and contracts == shares // 50
