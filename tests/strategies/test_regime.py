"""Regime classifier, its rolling building blocks, hysteresis, dwell and causality."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from arch.data import sp500

from bt_ibkr.errors import ConfigError, DataError
from strategies import REGIMES, RegimeAwareEnsemble
from strategies.regime import (
    WARMUP,
    DwellFilter,
    RegimeClassifier,
    RegimeParams,
    label_series,
    vol_high_next,
    warmup_bars,
)
from strategies.rolling import (
    RollingMax,
    RollingMean,
    RollingMin,
    RollingRank,
    RollingStd,
    WilderRSI,
)


@pytest.fixture(scope="module")
def closes() -> list[float]:
    return sp500.load()["Close"].astype(float).tolist()


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    rng = np.random.default_rng(7)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.012, 3000)))


def _stream(obj, xs):
    return [obj.update(float(x)) for x in xs]


def _nan(v):
    return math.nan if v is None else v


# ---------------------------------------------------------------- rolling statistics vs pandas
def test_rolling_mean_matches_pandas(walk):
    got = np.array([_nan(v) for v in _stream(RollingMean(200), walk)])
    want = pd.Series(walk).rolling(200).mean().to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)
    assert np.isnan(got[198]) and not np.isnan(got[199])


def test_rolling_std_matches_pandas(walk):
    r = np.diff(np.log(walk))
    got = np.array([_nan(v) for v in _stream(RollingStd(20), r)])
    want = pd.Series(r).rolling(20).std().to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15, equal_nan=True)


def test_rolling_rank_matches_pandas(walk):
    r = np.diff(np.log(walk))
    vol = pd.Series(r).rolling(20).std().dropna().to_numpy()
    got = np.array([_nan(v) for v in _stream(RollingRank(504, 252), vol)])
    want = pd.Series(vol).rolling(504, min_periods=252).rank(method="max", pct=True).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[250]) and got[251] > 0  # min history respected
    assert len(got) > 1500  # the full 504-value window is exercised, not only the ramp-up


def test_rolling_rank_handles_ties():
    xs = [1.0, 2.0, 2.0, 3.0, 2.0, 1.0, 1.0]
    got = _stream(RollingRank(3, 1), xs)
    want = pd.Series(xs).rolling(3, min_periods=1).rank(method="max", pct=True).tolist()
    assert got == pytest.approx(want)


def test_rolling_max_min_match_pandas(walk):
    gmax = _stream(RollingMax(55), walk)
    gmin = _stream(RollingMin(20), walk)
    s = pd.Series(walk)
    assert gmax == s.rolling(55, min_periods=1).max().tolist()
    assert gmin == s.rolling(20, min_periods=1).min().tolist()


def test_wilder_rsi_matches_naive():
    rng = np.random.default_rng(3)
    c = 50 + np.cumsum(rng.normal(0, 1, 300))
    got = _stream(WilderRSI(2), c)
    ch = np.diff(c)
    g = np.clip(ch, 0, None)
    lo = np.clip(-ch, 0, None)
    ag, al = g[:2].mean(), lo[:2].mean()
    want = [None, None, 100 - 100 / (1 + ag / al)]
    for i in range(2, len(ch)):
        ag = (ag + g[i]) / 2
        al = (al + lo[i]) / 2
        want.append(100 - 100 / (1 + ag / al))
    assert got[:2] == [None, None]
    np.testing.assert_allclose(got[2:], want[2:], rtol=1e-12)


def test_running_sums_do_not_drift():
    # big level + tiny noise: naive add/subtract sums drift; the periodic fsum keeps them exact
    rng = np.random.default_rng(11)
    xs = 1e6 + rng.normal(0, 1e-3, 20_000)
    m = RollingMean(200)
    s = RollingStd(20)
    for x in xs:
        m.update(float(x))
        s.update(float(x))
    assert m.value == pytest.approx(float(np.mean(xs[-200:])), rel=1e-15)
    assert s.value == pytest.approx(float(np.std(xs[-20:], ddof=1)), rel=1e-6)


def test_rolling_rejects_bad_window():
    with pytest.raises(ConfigError, match="window"):
        RollingMean(0)
    with pytest.raises(ConfigError, match="min_count"):
        RollingRank(10, 11)


# ---------------------------------------------------------------- hysteresis and dwell
def test_vol_hysteresis_path():
    path = [0.50, 0.79, 0.85, 0.70, 0.65, 0.61, 0.60, 0.59, 0.75, 0.81]
    state, states = False, []
    for rank in path:
        state = vol_high_next(state, rank, 0.80, 0.60)
        states.append(state)
    #        .50    .79    .85   .70   .65   .61   .60   .59    .75    .81
    assert states == [False, False, True, True, True, True, True, False, False, True]


def test_dwell_holds_each_regime_five_bars_then_follows_at_once():
    f = DwellFilter(5)
    # a label is taken at once; it is held 5 bars whatever the raw stream says
    seq = ["bull_quiet", "range", "bear_quiet", "range", "bull_quiet", "range", "range"]
    assert [f.update(x) for x in seq] == ["bull_quiet"] * 5 + ["range"] * 2
    # after the hold, a switch happens on the first differing bar: no confirmation lag
    for _ in range(3):
        assert f.update("range") == "range"
    assert f.update("bear_quiet") == "bear_quiet"
    # without an immediate label, crisis waits out the hold like any other regime
    assert [f.update("crisis") for _ in range(4)] == ["bear_quiet"] * 4
    assert f.update("crisis") == "crisis"
    with pytest.raises(ConfigError, match="min_dwell"):
        DwellFilter(0)


def test_crisis_may_enter_at_once_and_cut_a_hold_short():
    f = DwellFilter(5, immediate=("crisis",))
    assert [f.update(x) for x in ["bull_quiet", "range", "crisis"]] == [
        "bull_quiet", "bull_quiet", "crisis"]  # bar 3: crisis cuts bull_quiet's hold
    # crisis itself is then held like any regime (5 bars): a recovery does not end it sooner
    assert [f.update("bull_quiet") for _ in range(5)] == ["crisis"] * 4 + ["bull_quiet"]
    # inside a fresh hold only crisis gets through
    assert [f.update(x) for x in ["range", "bear_quiet", "crisis"]] == [
        "bull_quiet", "bull_quiet", "crisis"]
    # the classifier's switch: crisis_immediate=False is the previous rule
    assert RegimeClassifier()._dwell.immediate == {"crisis"}
    assert RegimeClassifier(RegimeParams(crisis_immediate=False))._dwell.immediate == set()
    with pytest.raises(ConfigError, match="crisis_immediate"):
        RegimeParams(crisis_immediate="yes")


def _runs(labels: list[str]) -> list[tuple[str, int]]:
    runs: list[tuple[str, int]] = []
    for lab in labels:
        if runs and runs[-1][0] == lab:
            runs[-1] = (lab, runs[-1][1] + 1)
        else:
            runs.append((lab, 1))
    return runs


def _regime_walk(seed: int, n: int = 4000) -> np.ndarray:
    """Seeded prices that switch between a calm uptrend and a volatile downtrend."""
    rng = np.random.default_rng(seed)
    state, r = 0, np.empty(n)
    for t in range(n):
        if rng.random() < (1 / 150 if state == 0 else 1 / 50):
            state = 1 - state
        r[t] = rng.normal(0.0004, 0.008) if state == 0 else rng.normal(-0.001, 0.025)
    return 100.0 * np.exp(np.cumsum(r))


@pytest.mark.slow
@pytest.mark.parametrize("series", ["sp500", "nasdaq", "synthetic-1", "synthetic-2"])
@pytest.mark.parametrize("use_hmm", [False, True])
def test_no_regime_lasts_less_than_the_dwell(series, use_hmm):
    """The docstring's promise, measured: every regime run lasts >= min_dwell bars, except a
    run a crisis cut short (crisis may enter at once) and the last one, which the end of the
    data may cut. With ``crisis_immediate=False`` there is no exception."""
    if series.startswith("synthetic"):
        x = _regime_walk(int(series[-1])).tolist()
    else:
        from arch.data import nasdaq

        x = (sp500 if series == "sp500" else nasdaq).load()["Close"].astype(float).tolist()
    if use_hmm:
        x = x[:2600]  # the HMM starts after 1,260 returns: keep the run short
    dwell = RegimeParams().min_dwell
    for immediate in (True, False):
        labels = label_series(x, use_hmm=use_hmm, crisis_immediate=immediate)
        runs = _runs(labels)
        assert runs[0][0] == WARMUP
        body = runs[1:-1]
        assert len(body) > 20, "the series must switch regimes often for the test to mean much"
        short = [i for i in range(1, len(runs) - 1) if runs[i][1] < dwell]
        if immediate:
            assert all(runs[i + 1][0] == "crisis" for i in short), [runs[i] for i in short]
        else:
            assert short == []
        assert {lab for lab, _ in body} == set(REGIMES)


def test_switches_follow_the_raw_label_once_the_dwell_is_served(closes):
    clf = RegimeClassifier()
    labels, raws, held = [], [], []
    for c in closes:
        labels.append(clf.update(c))
        raws.append(clf.raw)
        held.append(clf._dwell.held)
    lag_free = cut = 0
    for t in range(1, len(labels)):
        if labels[t - 1] == WARMUP:
            continue
        if labels[t] != labels[t - 1]:
            assert labels[t] == raws[t]  # a switch always lands on today's raw regime
            assert held[t - 1] >= 5 or labels[t] == "crisis"  # only crisis cuts a hold
            cut += held[t - 1] < 5
            lag_free += raws[t - 1] == labels[t - 1]  # raw changed on this very bar
        elif raws[t] != labels[t]:
            assert held[t - 1] < 5 and raws[t] != "crisis"  # held only inside the dwell
    assert lag_free > 50  # most switches happen on the first bar the rules change
    assert cut > 0  # and crisis did cut holds on 1999-2018


# ---------------------------------------------------------------- labels on the real sample
def test_warmup_then_only_known_regimes(closes):
    labels = label_series(closes)
    p = RegimeParams()
    # the vol rank needs a full window of 252 values of 20-day vol: bar 1 + 20 + 251 = 272
    # is the first regime
    n_warm = p.vol_window + p.vol_rank_min - 1
    assert n_warm == warmup_bars() == 271
    assert labels[:n_warm] == [WARMUP] * n_warm and labels[n_warm] != WARMUP
    assert set(labels[n_warm:]) == set(REGIMES)  # all five occur on 1999-2018
    assert RegimeAwareEnsemble.REGIMES == REGIMES
    # a longer SMA makes the trend the later input
    assert warmup_bars(RegimeParams(sma_long=300)) == 319


def test_trend_rule_has_no_dead_band_by_default(closes):
    clf = RegimeClassifier()
    seen = set()
    for c in closes:
        clf.update(c)
        if clf.slope is None:
            continue
        up = c > clf.sma and clf.slope > 0.0
        down = c < clf.sma and clf.slope < 0.0
        assert clf.trend == ("up" if up else "down" if down else "range")
        seen.add(clf.trend)
        if clf.trend == "range":
            assert (c > clf.sma) != (clf.slope > 0.0) or c == clf.sma or clf.slope == 0.0
    assert seen == {"up", "down", "range"}
    # a dead-band is a param: 1% turns part of the trending bars into range
    banded = label_series(closes, slope_threshold=0.01)
    assert banded.count("range") > label_series(closes).count("range")


def test_regime_is_trend_times_vol(closes):
    clf = RegimeClassifier(RegimeParams(min_dwell=1))  # no hold: the raw mapping itself
    table = {
        ("up", False): "bull_quiet",
        ("up", True): "bull_volatile",
        ("down", False): "bear_quiet",
        ("down", True): "crisis",
        ("range", False): "range",
        ("range", True): "range",
    }
    pairs = set()
    for c in closes:
        label = clf.update(c)
        if label != WARMUP:
            assert label == clf.raw == table[(clf.trend, clf.vol_high)]
            pairs.add((clf.trend, clf.vol_high))
    assert pairs == set(table)  # all six trend x vol cells occur


@pytest.mark.parametrize("window, minimum", [(252, None), (504, 252), (504, None)])
def test_vol_rank_uses_the_trailing_window(closes, window, minimum):
    """The rank is pandas' rolling percentile rank over the trailing ``vol_rank_window``
    realized vols, from ``vol_rank_min`` values on (default: the full window)."""
    r = np.diff(np.log(np.array(closes)))
    vol = pd.Series(r).rolling(20).std() * math.sqrt(252)
    want = vol.dropna().rolling(window, min_periods=minimum or window).rank(
        method="max", pct=True)
    clf = RegimeClassifier(RegimeParams(vol_rank_window=window, vol_rank_min=minimum))
    got = []
    for c in closes:
        clf.update(c)
        got.append(_nan(clf.vol_rank))
    got = np.array(got[20:])  # the first 20-day vol is on bar 21 (index 20)
    np.testing.assert_allclose(got, want.to_numpy(), rtol=1e-9, equal_nan=True)
    # the first rank, hence the first regime, comes once vol_rank_min values exist
    first = int(np.argmax(~np.isnan(got)))
    assert first == (minimum or window) - 1
    assert warmup_bars(RegimeParams(vol_rank_window=window, vol_rank_min=minimum)) == max(
        220, 20 + (minimum or window)) - 1


def test_late_2008_is_crisis_and_2017_is_bull_quiet(closes):
    idx = sp500.load().index
    s = pd.Series(label_series(closes), index=idx)
    autumn = s["2008-09-15":"2008-12-31"]
    assert (autumn == "crisis").mean() > 0.9
    assert (s["2017-01-01":"2017-12-31"] == "bull_quiet").mean() > 0.8


@pytest.mark.slow
@pytest.mark.parametrize(
    "use_hmm, end, cuts", [(False, 5031, (600, 1500, 3000)), (True, 2000, (600, 1300, 1500))]
)
def test_labels_have_no_look_ahead(closes, use_hmm, end, cuts):
    full = label_series(closes[:end], use_hmm=use_hmm)
    for t in cuts:
        assert label_series(closes[:t], use_hmm=use_hmm) == full[:t], t


@pytest.mark.slow
def test_hmm_overlay_changes_labels_only_by_promotion(closes):
    x = closes[:3000]
    plain = label_series(x)
    clf = RegimeClassifier(RegimeParams(use_hmm=True))
    labels, quiet_while_on, p_seen, on = [], 0, [], []
    for c in x:
        labels.append(clf.update(c))
        if clf.p_high is not None:
            p_seen.append(clf.p_high)
            on.append(clf.hmm_on)
            if clf.hmm_on:  # a quiet raw regime must have been promoted
                quiet_while_on += clf.raw in ("bull_quiet", "bear_quiet")
    assert quiet_while_on == 0
    # the first fit needs the full 1,260-return window: bar 1,261
    assert len(p_seen) == 3000 - 1260 and 0.0 <= min(p_seen) and max(p_seen) <= 1.0
    assert max(p_seen) > 0.99 and min(p_seen) < 0.01  # the overlay is decisive on real data
    # hysteresis: on above 0.8, off below 0.5, unchanged in between (and it is in between)
    state = False
    for p, got in zip(p_seen, on, strict=True):
        state = vol_high_next(state, p, 0.8, 0.5)
        assert got == state
    assert any(0.5 <= p <= 0.8 for p in p_seen)
    changed = [(a, b) for a, b in zip(plain, labels, strict=True) if a != b]
    assert changed  # it does something
    # promotion makes regimes more defensive, never less: more volatile/crisis bars overall
    calm = ("bull_quiet", "bear_quiet")
    assert sum(lab in calm for lab in labels) < sum(lab in calm for lab in plain)


def test_label_series_errors():
    with pytest.raises(ConfigError, match="sma_lon"):
        label_series([1.0, 2.0], sma_lon=100)
    with pytest.raises(ConfigError, match="vol_high_exit"):
        label_series([1.0], vol_high_enter=0.5, vol_high_exit=0.7)
    with pytest.raises(DataError, match="bar 3"):
        label_series([1.0, 2.0, 0.0])
