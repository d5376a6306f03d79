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
    got = np.array([_nan(v) for v in _stream(RollingRank(504, 60), vol)])
    want = pd.Series(vol).rolling(504, min_periods=60).rank(method="max", pct=True).to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[58]) and got[59] > 0  # min history respected


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


def test_dwell_delays_a_flip_by_five_bars_and_crisis_is_immediate():
    f = DwellFilter(5)
    seq = ["bull_quiet"] * 3 + ["range"] * 6
    out = [f.update(x) for x in seq]
    # range first seen at index 3; confirmed on its 5th consecutive bar, index 7
    assert out == ["bull_quiet"] * 7 + ["range"] * 2
    assert f.update("crisis") == "crisis"  # no dwell into crisis
    # leaving crisis needs 5 bars again; an interrupted candidate starts over
    out = [f.update(x) for x in ["bear_quiet"] * 4 + ["range"] + ["bear_quiet"] * 5]
    assert out == ["crisis"] * 9 + ["bear_quiet"]


def test_classifier_dwell_on_real_data(closes):
    labels = label_series(closes)
    clf = RegimeClassifier()
    raws = []
    for c in closes:
        clf.update(c)
        raws.append(clf.raw)
    # every confirmed switch into a non-crisis regime is preceded by 5 raw bars of it
    for t in range(1, len(labels)):
        if labels[t] != labels[t - 1] and labels[t - 1] != WARMUP and labels[t] != "crisis":
            assert raws[t - 4 : t + 1] == [labels[t]] * 5, t
    # and every regime but crisis lasts at least 5 bars (runs cut by crisis excepted)
    runs, start = [], 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            runs.append((labels[start], t - start, labels[t] if t < len(labels) else None))
            start = t
    short = [r for r in runs[1:-1] if r[1] < 5 and r[2] != "crisis"]
    assert short == []


# ---------------------------------------------------------------- labels on the real sample
def test_warmup_then_only_known_regimes(closes):
    labels = label_series(closes)
    p = RegimeParams()
    n_warm = p.sma_long + p.slope_lookback - 1  # 219: the rank (>= 80 bars) is ready earlier
    assert labels[:n_warm] == [WARMUP] * n_warm
    assert set(labels[n_warm:]) == set(REGIMES)  # all five occur on 1999-2018
    assert RegimeAwareEnsemble.REGIMES == REGIMES


def test_late_2008_is_crisis_and_2017_is_bull_quiet(closes):
    idx = sp500.load().index
    s = pd.Series(label_series(closes), index=idx)
    autumn = s["2008-09-15":"2008-12-31"]
    assert (autumn == "crisis").mean() > 0.9
    assert (s["2017-01-01":"2017-12-31"] == "bull_quiet").mean() > 0.8


@pytest.mark.parametrize(
    "use_hmm, end, cuts", [(False, 5031, (600, 1500, 3000)), (True, 2000, (600, 1500))]
)
def test_labels_have_no_look_ahead(closes, use_hmm, end, cuts):
    full = label_series(closes[:end], use_hmm=use_hmm)
    for t in cuts:
        assert label_series(closes[:t], use_hmm=use_hmm) == full[:t], t


def test_hmm_overlay_changes_labels_only_by_promotion(closes):
    x = closes[:3000]
    plain = label_series(x)
    clf = RegimeClassifier(RegimeParams(use_hmm=True))
    labels, quiet_while_high, p_seen = [], 0, []
    for c in x:
        labels.append(clf.update(c))
        if clf.p_high is not None:
            p_seen.append(clf.p_high)
            if clf.p_high > 0.8:  # a quiet raw regime must have been promoted
                quiet_while_high += clf.raw in ("bull_quiet", "bear_quiet")
    assert quiet_while_high == 0
    assert len(p_seen) == 3000 - 252 and 0.0 <= min(p_seen) and max(p_seen) <= 1.0
    assert max(p_seen) > 0.99 and min(p_seen) < 0.01  # the overlay is decisive on real data
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
