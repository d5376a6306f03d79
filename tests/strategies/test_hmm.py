"""2-state Gaussian HMM: EM recovers a known process, the forward filter is causal."""

from __future__ import annotations

import numpy as np
import pytest

from bt_ibkr.errors import ConfigError, DataError
from strategies.hmm import HMMOverlay, HMMParams, fit_hmm, forward_filter

TRUE_SD = (0.006, 0.02)
TRUE_STAY = (0.98, 0.95)


def _simulate(n: int, seed: int, first_state_high: bool = False):
    """Returns and hidden states of a known 2-state process (seeded numpy RNG)."""
    rng = np.random.default_rng(seed)
    states = np.empty(n, dtype=int)
    states[0] = 1 if first_state_high else 0
    u = rng.random(n)
    for t in range(1, n):
        stay = TRUE_STAY[states[t - 1]]
        states[t] = states[t - 1] if u[t] < stay else 1 - states[t - 1]
    sd = np.where(states == 0, TRUE_SD[0], TRUE_SD[1])
    return rng.normal(0.0003, sd), states


def _naive_filter(x, p: HMMParams) -> np.ndarray:
    """Textbook normalised forward recursion with full 2x2 matrices (reference)."""
    A = np.array(p.trans)
    mu = np.array(p.means)
    var = np.array(p.variances)
    out = np.empty((len(x), 2))
    prior = np.array(p.init)
    for t, xt in enumerate(x):
        b = np.exp(-0.5 * (xt - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)
        a = prior * b
        out[t] = a / a.sum()
        prior = out[t] @ A
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_em_recovers_known_process(seed):
    x, states = _simulate(2000, seed)
    fit = fit_hmm(x)
    sd = np.sqrt(fit.params.variances)
    assert sd[0] < sd[1]  # state 0 is the low-variance state
    assert sd[0] == pytest.approx(TRUE_SD[0], rel=0.2)
    assert sd[1] == pytest.approx(TRUE_SD[1], rel=0.2)
    assert fit.params.trans[0][0] == pytest.approx(TRUE_STAY[0], abs=0.03)
    assert fit.params.trans[1][1] == pytest.approx(TRUE_STAY[1], abs=0.05)
    # the filter tracks the hidden state most of the time
    p_high = forward_filter(x, fit.params)[:, 1]
    assert ((p_high > 0.5) == (states == 1)).mean() > 0.85


def test_states_sorted_by_variance_when_data_starts_in_high_state():
    x, _ = _simulate(1500, 5, first_state_high=True)
    x[:300] *= 3.0  # a long volatile start pulls the quantile start toward the high state
    fit = fit_hmm(x)
    assert fit.params.variances[0] < fit.params.variances[1]
    assert sum(fit.params.trans[0]) == pytest.approx(1.0)
    assert sum(fit.params.trans[1]) == pytest.approx(1.0)
    # start EM with the states the wrong way round: the result is still sorted, and the
    # filtered probability of the LAST bar (a volatile stretch) is on the high state
    x[-60:] *= 4.0
    swapped = HMMParams(
        means=(0.0, 0.0),
        variances=(4e-4, 4e-5),
        trans=((0.95, 0.05), (0.05, 0.95)),
        init=(0.5, 0.5),
    )
    fit = fit_hmm(x, init=swapped)
    assert fit.params.variances[0] < fit.params.variances[1]
    assert fit.filtered_last[1] > 0.9
    assert fit.params.trans[1][1] > 0.8


def test_fit_is_deterministic_and_improves_likelihood():
    x, _ = _simulate(1260, 9)
    a = fit_hmm(x)
    b = fit_hmm(x)
    assert a == b  # no RNG: bit-identical
    one = fit_hmm(x, max_iter=1)
    assert a.loglik > one.loglik


def test_forward_filter_matches_textbook_recursion():
    x, _ = _simulate(800, 4)
    p = fit_hmm(x).params
    np.testing.assert_allclose(forward_filter(x, p), _naive_filter(x, p), rtol=1e-9, atol=1e-12)
    # the fit's last filtered value is the filter's last row
    fit = fit_hmm(x)
    assert fit.filtered_last == pytest.approx(tuple(forward_filter(x, fit.params)[-1]))


def test_forward_filter_prefix_equals_truncated_full():
    x, _ = _simulate(1500, 6)
    p = fit_hmm(x[:500]).params
    full = forward_filter(x, p)
    for t in (10, 400, 1000):
        np.testing.assert_array_equal(forward_filter(x[:t], p), full[:t])


def test_overlay_is_causal_and_refits_on_schedule():
    x, states = _simulate(1400, 8)
    ov = HMMOverlay(window=1260, refit_every=21, min_history=252)
    full = [ov.update(float(r)) for r in x]
    assert full[:251] == [None] * 251 and full[251] is not None
    assert ov.fits == 1 + (1400 - 252) // 21
    for t in (300, 700, 1333):
        pre = HMMOverlay(window=1260, refit_every=21, min_history=252)
        assert [pre.update(float(r)) for r in x[:t]] == full[:t], t
    p = np.array(full[251:])
    assert ((p > 0.5) == (states[251:] == 1)).mean() > 0.85


def test_errors_name_the_problem():
    with pytest.raises(DataError, match="constant"):
        fit_hmm(np.zeros(100))
    with pytest.raises(DataError, match="at least 10"):
        fit_hmm([0.1, 0.2])
    with pytest.raises(ConfigError, match="max_iter"):
        fit_hmm(np.arange(20.0), max_iter=0)
    with pytest.raises(ConfigError, match="hmm_min_history"):
        HMMOverlay(window=100, min_history=200)


def test_overlay_fits_a_fixed_trailing_window():
    """Every refit uses exactly the last ``window`` returns (not a growing history)."""
    x, _ = _simulate(700, 10)
    ov = HMMOverlay(window=300, refit_every=21, min_history=300)
    fits_at = []
    for t, r in enumerate(x, start=1):
        before = ov.fits
        ov.update(float(r))
        if ov.fits != before:
            fits_at.append(t)
            assert ov.params == fit_hmm(x[t - 300 : t]).params, t
            assert ov.p_high == pytest.approx(fit_hmm(x[t - 300 : t]).filtered_last[1])
    assert fits_at == list(range(300, 701, 21))


def test_strategy_overlay_waits_for_the_full_window():
    from strategies.regime import RegimeClassifier, RegimeParams

    clf = RegimeClassifier(RegimeParams(use_hmm=True, hmm_window=400, hmm_refit_every=21))
    assert clf._hmm.window == clf._hmm.min_history == 400
    x, _ = _simulate(500, 11)
    close = 100.0
    clf.update(close)
    for t, r in enumerate(x, start=1):
        close *= float(np.exp(r))
        clf.update(close)
        assert (clf.p_high is None) == (t < 400), t


# ---------------------------------------------- the one-pass EM against the loop version (#23)
def _reference_fit(x, max_iter: int = 50, tol: float = 1e-7):
    """fit_hmm as it was before the one-pass forward/backward: two separate Python loops per
    EM iteration (kept here verbatim as the reference). Returns (params, loglik, n_iter,
    converged, filtered_last)."""
    from strategies.hmm import (
        _MIN_TRANS,
        _MIN_VAR_FRACTION,
        _initial_params,
        _log_emissions,
        _loglik,
        _ratio,
        _sorted_by_variance,
    )

    def forward(ratio, p):
        (a00, a01), (a10, a11) = p.trans
        d0, d1 = a10 - a00, a11 - a01
        rs = ratio.tolist()
        v = p.init[1] * rs[0]
        f1 = v / (p.init[0] + v)
        out = [f1]
        for r in rs[1:]:
            v = (a01 + d1 * f1) * r
            f1 = v / (a00 + d0 * f1 + v)
            out.append(f1)
        return np.array(out)

    def backward(ratio, p):
        (a00, a01), (a10, a11) = p.trans
        q = 1.0
        out = [1.0]
        for r in reversed(ratio.tolist()[1:]):
            w = r * q
            q = (a10 + a11 * w) / (a00 + a01 * w)
            out.append(q)
        out.reverse()
        return np.array(out)

    x = np.asarray(x, dtype=float).ravel()
    floor = float(np.var(x)) * _MIN_VAR_FRACTION
    p = _initial_params(x)
    n = x.size
    prev_ll = -np.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        l0, l1 = _log_emissions(x, p)
        ratio = _ratio(l0, l1)
        f1 = forward(ratio, p)
        ll = _loglik(l0, l1, f1, p)
        q = backward(ratio, p)
        f0 = 1.0 - f1
        h = f1 * q
        g1 = h / (f0 + h)
        g0 = 1.0 - g1
        (a00, a01), (a10, a11) = p.trans
        y = ratio[1:] * q[1:]
        F0, F1 = f0[:-1], f1[:-1]
        inv = 1.0 / (F0 * (a00 + a01 * y) + F1 * (a10 + a11 * y))
        F0, F1 = F0 * inv, F1 * inv
        s00, s01 = a00 * float(F0.sum()), a01 * float(F0 @ y)
        s10, s11 = a10 * float(F1.sum()), a11 * float(F1 @ y)
        r0, r1 = s00 + s01, s10 + s11
        w0, w1 = float(g0.sum()), float(g1.sum())
        if not (w0 > 0.0 and w1 > 0.0 and r0 > 0.0 and r1 > 0.0):
            break
        m0, m1 = float(g0 @ x) / w0, float(g1 @ x) / w1
        v0 = max(float(g0 @ (x - m0) ** 2) / w0, floor)
        v1 = max(float(g1 @ (x - m1) ** 2) / w1, floor)
        t01 = min(max(s01 / r0, _MIN_TRANS), 1.0 - _MIN_TRANS)
        t10 = min(max(s10 / r1, _MIN_TRANS), 1.0 - _MIN_TRANS)
        p = HMMParams(means=(m0, m1), variances=(v0, v1),
                      trans=((1.0 - t01, t01), (t10, 1.0 - t10)),
                      init=(float(g0[0]), float(g1[0])))
        if abs(ll - prev_ll) < tol * n:
            converged = True
            break
        prev_ll = ll
    p = _sorted_by_variance(p)
    l0, l1 = _log_emissions(x, p)
    f1 = forward(_ratio(l0, l1), p)
    last = float(f1[-1])
    return p, _loglik(l0, l1, f1, p), it, converged, (1.0 - last, last)


def _gspc_returns():
    from feeds.sample import load_sample

    close = load_sample("^GSPC")["close"].to_numpy(dtype=float)
    return np.diff(np.log(close))


@pytest.mark.slow
def test_em_fit_equals_the_loop_version_on_every_refit_window():
    """Every window the Strategy's overlay refits on (^GSPC, 1,260 returns every 21 bars) and
    seeded synthetic windows: the same parameters, log-likelihood, iteration count and last
    filtered probability, to the last bit."""
    x = _gspc_returns()
    windows = [x[end - 1260:end] for end in range(1260, len(x) + 1, 21)]
    windows += [_simulate(n, seed)[0] for n, seed in ((1260, 21), (500, 22), (60, 23))]
    for i, w in enumerate(windows):
        fit = fit_hmm(w)
        got = (fit.params, fit.loglik, fit.n_iter, fit.converged, fit.filtered_last)
        assert got == _reference_fit(w), i
    forced = fit_hmm(windows[0], max_iter=50, tol=0.0)
    ref = _reference_fit(windows[0], max_iter=50, tol=0.0)
    assert (forced.params, forced.loglik, forced.n_iter) == ref[:3] and forced.n_iter == 50


@pytest.mark.slow
def test_hmm_labels_equal_the_loop_version_bar_for_bar(monkeypatch):
    """The regime labels and P(high) with use_hmm on ^GSPC, bar for bar, with the fit as
    shipped and with the loop version."""
    import strategies.hmm as hmm_mod
    from feeds.sample import load_sample
    from strategies.regime import RegimeClassifier, RegimeParams

    closes = load_sample("^GSPC")["close"].tolist()

    def run():
        clf = RegimeClassifier(RegimeParams(use_hmm=True))
        rows = [(clf.update(c), clf.p_high, clf.hmm_on) for c in closes]
        return rows, clf.hmm_fits

    shipped, fits = run()

    def loop_fit(x, max_iter=50, tol=1e-7, init=None):
        p, ll, it, conv, last = _reference_fit(x, max_iter, tol)
        return hmm_mod.HMMFit(params=p, loglik=ll, n_iter=it, converged=conv,
                              filtered_last=last)

    monkeypatch.setattr(hmm_mod, "fit_hmm", loop_fit)
    reference, ref_fits = run()
    assert fits == ref_fits == 180
    assert sum(on for _, _, on in shipped) > 100  # the overlay does promote somewhere
    for i, (a, b) in enumerate(zip(shipped, reference, strict=True)):
        assert a == b, f"bar {i + 1}: {a} != {b}"
