"""Two-state Gaussian hidden Markov model: Baum-Welch fit in NumPy and a causal forward filter.

The overlay used by :class:`strategies.RegimeAwareEnsemble` (``use_hmm=True``) is
:class:`HMMOverlay`: it is fed one daily log return per bar, refits the model every
``refit_every`` bars on the trailing ``window`` returns (once ``min_history`` returns exist),
sorts the two states by variance after every fit (state 0 = low variance) and, between fits,
advances the FORWARD FILTER by one step per bar. It never smooths and never runs Viterbi, so
the probability reported at bar t depends only on returns up to and including bar t.

Everything is deterministic: the EM initialisation comes from quantiles of the data, there is
no random number generator anywhere.

Two paths run the EM iterations and give the same floats, bit for bit (so the same labels):

* compiled (the optional extra ``hmm``, ``pip install -e ".[hmm]"``: numba): the kernels of
  :mod:`strategies.hmm_kernels` do each NumPy expression's IEEE operations in the same order
  (no ``fastmath``), NumPy's own ``exp`` and ``log`` run between them; a 1,260-point fit
  with 50 iterations takes ~1 ms. Compiled code is cached on disk: the first process on a
  machine compiles for 2-5 s, later ones load it in ~0.4 s (mostly importing numba), only
  when a fit is first needed;
* Python: the recursions over plain Python floats (for two states faster than NumPy calls per
  step), the forward and the backward pass sharing one loop, the rest vectorised with NumPy:
  ~13-15 ms for the same fit, three quarters of it in the recursions, whose steps each depend
  on the one before (NumPy cannot vectorise them without reordering the floating-point
  operations, which changes the fitted numbers).

``BT_IBKR_HMM`` chooses: ``auto`` (default: compiled when numba is installed and its kernels
reproduce NumPy's sums, dot products and logs on this machine, checked when they load),
``numba`` (the same, an error if it cannot) or ``python``; :func:`hmm_backend` says which runs
and what loading it cost. A warm start from the previous fit would cut the iterations but
changes labels, and is not used.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from bt_ibkr.errors import ConfigError, DataError

from .hmm_backend import CompiledEM, HMMBackend, compiled_kernels, hmm_backend, select_hmm_backend

__all__ = [
    "HMMBackend",
    "HMMFit",
    "HMMOverlay",
    "HMMParams",
    "fit_hmm",
    "forward_filter",
    "hmm_backend",
    "select_hmm_backend",
]

_LOG_2PI = math.log(2.0 * math.pi)
_MIN_VAR_FRACTION = 1e-4  # variance floor, as a fraction of the sample variance
_MIN_TRANS = 1e-6  # transition probability floor: keeps both states reachable
_MAX_LOG_RATIO = 700.0  # |log b1/b0| clip: exp() stays finite


@dataclass(frozen=True)
class HMMParams:
    """Parameters of a 2-state Gaussian HMM; state 0 is the low-variance state after a fit.

    ``trans[i][j]`` is P(state j at t+1 | state i at t); ``init`` is P(state at t=0).
    """

    means: tuple[float, float]
    variances: tuple[float, float]
    trans: tuple[tuple[float, float], tuple[float, float]]
    init: tuple[float, float]


@dataclass(frozen=True)
class HMMFit:
    """Result of :func:`fit_hmm`.

    ``filtered_last`` is P(state | x[0..T-1]) at the last observation (the forward filter's
    final value under the fitted parameters), ``loglik`` the log-likelihood of the data under
    the fitted parameters, ``n_iter`` the number of EM iterations run.
    """

    params: HMMParams
    loglik: float
    n_iter: int
    converged: bool
    filtered_last: tuple[float, float]


def _mean(a: np.ndarray) -> float:
    """``float(np.mean(a))`` for a 1-D float array, bit for bit (NumPy's pairwise sum divided
    by the count), without np.mean's dispatch overhead."""
    return float(a.sum()) / a.size


def _var(a: np.ndarray) -> float:
    """``float(np.var(a))`` (ddof 0) for a 1-D float array, bit for bit: the mean of the
    squared deviations from :func:`_mean`, as NumPy computes it."""
    d = a - _mean(a)
    return float((d * d).sum()) / a.size


def _median(a: np.ndarray) -> float:
    """``float(np.median(a))`` for a 1-D float array without NaN, bit for bit: the mean of the
    one or two middle order statistics of one partition."""
    n = a.size
    h = n // 2
    if n % 2:
        return _mean(np.partition(a, h)[h : h + 1])
    return _mean(np.partition(a, (h - 1, h))[h - 1 : h + 1])


def _quantile(a: np.ndarray, q: float) -> float:
    """``float(np.quantile(a, q))`` (method "linear") for a 1-D float array without NaN and
    0 <= q < 1, bit for bit: NumPy's virtual index (n - 1) q, the two order statistics around
    it from one partition, and NumPy's interpolation (from the upper one when the weight is
    at least 1/2)."""
    v = (a.size - 1) * q
    lo = math.floor(v)
    part = np.partition(a, (lo, lo + 1))
    x0 = float(part[lo])
    x1 = float(part[lo + 1])
    t = v - lo
    d = x1 - x0
    return x1 - d * (1 - t) if t >= 0.5 else x0 + d * t


def _initial_params(x: np.ndarray, total_var: float | None = None) -> HMMParams:
    """Deterministic start: split observations by |x - median| at its 75th percentile.

    ``total_var`` is ``np.var(x)`` when the caller has it already. The statistics are those of
    NumPy's median, quantile, mean and var to the last bit (:func:`_median`, :func:`_quantile`,
    :func:`_mean`, :func:`_var`), computed with less overhead: this runs on every refit."""
    med = _median(x)
    dev = np.abs(x - med)
    cut = _quantile(dev, 0.75)
    inner = x[dev <= cut]
    outer = x[dev > cut]
    if total_var is None:
        total_var = _var(x)
    floor = max(total_var * _MIN_VAR_FRACTION, 1e-300)
    if outer.size < 2 or inner.size < 2:
        v0, v1 = total_var * 0.5, total_var * 2.0
        m0 = m1 = _mean(x)
    else:
        # the outer group holds both tails, so its own mean is meaningless: use the grand mean
        m0, m1 = _mean(inner), _mean(x)
        d = inner - m0
        v0 = float((d * d).sum()) / d.size
        d = outer - m1
        v1 = float((d * d).sum()) / d.size
    v0 = max(v0, floor)
    v1 = max(v1, v0 * 1.5, floor)
    return HMMParams(
        means=(m0, m1),
        variances=(v0, v1),
        trans=((0.97, 0.03), (0.06, 0.94)),
        init=(0.5, 0.5),
    )


def _log_emissions(x: np.ndarray, p: HMMParams) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian log densities log b_k(x_t) for k = 0, 1."""
    m0, m1 = p.means
    v0, v1 = p.variances
    l0 = -0.5 * (_LOG_2PI + math.log(v0) + (x - m0) ** 2 / v0)
    l1 = -0.5 * (_LOG_2PI + math.log(v1) + (x - m1) ** 2 / v1)
    return l0, l1


def _ratio(l0: np.ndarray, l1: np.ndarray) -> np.ndarray:
    """Likelihood ratio b_1 / b_0, clipped so it stays a finite, non-zero double."""
    return np.exp(np.clip(l1 - l0, -_MAX_LOG_RATIO, _MAX_LOG_RATIO))


def _forward(ratio: np.ndarray, p: HMMParams) -> np.ndarray:
    """Forward filter on the likelihood ratio: returns f1[t] = P(s_t = 1 | x_0..t).

    With two states the normalised forward recursion needs one number per step:
    f1' = pred1 R / (pred0 + pred1 R), pred = (1 - f1, f1) @ trans.
    """
    (a00, a01), (a10, a11) = p.trans
    d0 = a10 - a00
    d1 = a11 - a01
    rs = ratio.tolist()
    v = p.init[1] * rs[0]
    f1 = v / (p.init[0] + v)
    out = [f1]
    ap = out.append
    for r in rs[1:]:
        v = (a01 + d1 * f1) * r
        f1 = v / (a00 + d0 * f1 + v)
        ap(f1)
    return np.array(out)


def _backward(ratio: np.ndarray, p: HMMParams) -> np.ndarray:
    """Backward pass on ratios: returns q[t] = beta_t(1) / beta_t(0) (q[T-1] = 1)."""
    (a00, a01), (a10, a11) = p.trans
    rs = ratio.tolist()
    q = 1.0
    out = [1.0]
    ap = out.append
    for r in reversed(rs[1:]):
        w = r * q
        q = (a10 + a11 * w) / (a00 + a01 * w)
        ap(q)
    out.reverse()
    return np.array(out)


def _forward_backward(ratio: np.ndarray, p: HMMParams) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_forward` and :func:`_backward` in one pass over the ratios: returns (f1, q).

    The same arithmetic, step for step (so the same floats): the forward step t and the
    backward step T-t share one loop iteration, which halves the loop's own cost.
    """
    (a00, a01), (a10, a11) = p.trans
    d0 = a10 - a00
    d1 = a11 - a01
    rs = ratio.tolist()
    v = p.init[1] * rs[0]
    f1 = v / (p.init[0] + v)
    fwd = [f1]
    bwd = [1.0]
    fap = fwd.append
    bap = bwd.append
    q = 1.0
    tail = rs[1:]
    for r, rb in zip(tail, reversed(tail), strict=True):
        v = (a01 + d1 * f1) * r
        f1 = v / (a00 + d0 * f1 + v)
        fap(f1)
        w = rb * q
        q = (a10 + a11 * w) / (a00 + a01 * w)
        bap(q)
    bwd.reverse()
    return np.array(fwd), np.array(bwd)


def _loglik(l0: np.ndarray, l1: np.ndarray, f1: np.ndarray, p: HMMParams) -> float:
    """Log-likelihood from the one-step predictions of the forward filter."""
    (a00, a01), (a10, a11) = p.trans
    pred1 = np.empty_like(f1)
    pred1[0] = p.init[1]
    pred1[1:] = a01 + (a11 - a01) * f1[:-1]
    lmax = np.maximum(l0, l1)
    return float(
        (lmax + np.log((1.0 - pred1) * np.exp(l0 - lmax) + pred1 * np.exp(l1 - lmax))).sum()
    )


def fit_hmm(
    x,
    max_iter: int = 50,
    tol: float = 1e-7,
    init: HMMParams | None = None,
) -> HMMFit:
    """Fit a 2-state Gaussian HMM to the 1-D series ``x`` by Baum-Welch (EM with scaling).

    Returns an :class:`HMMFit` whose states are sorted by variance (state 0 = low variance).
    Stops when the per-observation log-likelihood improves by less than ``tol`` or after
    ``max_iter`` iterations. ``init`` defaults to a deterministic quantile-based start.

    Raises :class:`ConfigError` for ``max_iter < 1`` and :class:`DataError` when ``x`` has fewer
    than 10 finite values or is constant (no variance to model).
    """
    if max_iter < 1:
        raise ConfigError(f"fit_hmm: max_iter must be >= 1, got {max_iter!r}")
    x = np.asarray(x, dtype=float).ravel()
    if x.size < 10 or not np.all(np.isfinite(x)):
        raise DataError(
            f"fit_hmm: need at least 10 finite observations, got {x.size} "
            f"({int(np.sum(~np.isfinite(x)))} non-finite); pass clean log returns"
        )
    total_var = _var(x)
    if not total_var > 0.0:
        raise DataError("fit_hmm: the series is constant; an HMM on it is meaningless")
    floor = total_var * _MIN_VAR_FRACTION
    p = init if init is not None else _initial_params(x, total_var)
    k = compiled_kernels()
    if k is None:
        p, it, converged = _em_python(x, p, max_iter, tol, floor)
        p = _sorted_by_variance(p)
        l0, l1 = _log_emissions(x, p)
        f1 = _forward(_ratio(l0, l1), p)
        ll = _loglik(l0, l1, f1, p)
        last = float(f1[-1])
    else:
        em = CompiledEM(k, x, _MAX_LOG_RATIO, _MIN_TRANS)
        prm, it, converged = em.run(_vector(p), max_iter, tol, floor)
        p = _sorted_by_variance(_params(prm))
        last, ll = em.filter_and_loglik(_vector(p))
    return HMMFit(
        params=p, loglik=ll, n_iter=it, converged=converged, filtered_last=(1.0 - last, last)
    )


def _em_python(
    x: np.ndarray, p: HMMParams, max_iter: int, tol: float, floor: float
) -> tuple[HMMParams, int, bool]:
    """The EM iterations in Python and NumPy: returns (params, iterations, converged)."""
    n = x.size
    prev_ll = -math.inf
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - it is reported after the loop
        l0, l1 = _log_emissions(x, p)
        ratio = _ratio(l0, l1)
        f1, q = _forward_backward(ratio, p)
        ll = _loglik(l0, l1, f1, p)
        f0 = 1.0 - f1
        # smoothed state probabilities gamma_t(1) = f1 q / (f0 + f1 q)
        h = f1 * q
        g1 = h / (f0 + h)
        g0 = 1.0 - g1
        # expected transitions xi_t(i, j) ~ f_i(t) a_ij y_j(t+1), y = (1, R q), normalised per t
        (a00, a01), (a10, a11) = p.trans
        y = ratio[1:] * q[1:]
        F0 = f0[:-1]
        F1 = f1[:-1]
        inv = 1.0 / (F0 * (a00 + a01 * y) + F1 * (a10 + a11 * y))
        F0 = F0 * inv
        F1 = F1 * inv
        s00 = a00 * float(F0.sum())
        s01 = a01 * float(F0 @ y)
        s10 = a10 * float(F1.sum())
        s11 = a11 * float(F1 @ y)
        r0 = s00 + s01
        r1 = s10 + s11
        w0 = float(g0.sum())
        w1 = float(g1.sum())
        if not (w0 > 0.0 and w1 > 0.0 and r0 > 0.0 and r1 > 0.0):
            break  # a state collapsed; keep the last good parameters
        m0 = float(g0 @ x) / w0
        m1 = float(g1 @ x) / w1
        v0 = max(float(g0 @ (x - m0) ** 2) / w0, floor)
        v1 = max(float(g1 @ (x - m1) ** 2) / w1, floor)
        p = _m_step_params(m0, m1, v0, v1, s01 / r0, s10 / r1, float(g0[0]), float(g1[0]))
        if abs(ll - prev_ll) < tol * n:
            converged = True
            break
        prev_ll = ll
    return p, it, converged


def _m_step_params(m0, m1, v0, v1, t01, t10, i0, i1) -> HMMParams:
    """The M-step's parameters, transition probabilities kept inside [_MIN_TRANS, 1 - it]."""
    t01 = min(max(t01, _MIN_TRANS), 1.0 - _MIN_TRANS)
    t10 = min(max(t10, _MIN_TRANS), 1.0 - _MIN_TRANS)
    return HMMParams(
        means=(m0, m1),
        variances=(v0, v1),
        trans=((1.0 - t01, t01), (t10, 1.0 - t10)),
        init=(i0, i1),
    )


def _vector(p: HMMParams) -> np.ndarray:
    """``p`` as the kernels' parameter vector (means, variances, transitions, init)."""
    (a00, a01), (a10, a11) = p.trans
    return np.array([*p.means, *p.variances, a00, a01, a10, a11, *p.init])


def _params(v: np.ndarray) -> HMMParams:
    """The inverse of :func:`_vector`, with Python floats."""
    m0, m1, v0, v1, a00, a01, a10, a11, i0, i1 = v.tolist()
    return HMMParams(means=(m0, m1), variances=(v0, v1), trans=((a00, a01), (a10, a11)),
                     init=(i0, i1))


def _sorted_by_variance(p: HMMParams) -> HMMParams:
    if p.variances[0] <= p.variances[1]:
        return p
    (a00, a01), (a10, a11) = p.trans
    return HMMParams(
        means=(p.means[1], p.means[0]),
        variances=(p.variances[1], p.variances[0]),
        trans=((a11, a10), (a01, a00)),
        init=(p.init[1], p.init[0]),
    )


def forward_filter(x, params: HMMParams) -> np.ndarray:
    """Filtered state probabilities P(s_t | x_0..t) for every t, shape (T, 2).

    Row t uses observations up to t only, so a prefix of the input gives the same rows as the
    full input truncated (tested).
    """
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0:
        return np.zeros((0, 2))
    l0, l1 = _log_emissions(x, params)
    a1 = _forward(_ratio(l0, l1), params)
    return np.column_stack([1.0 - a1, a1])


class HMMOverlay:
    """Incremental, causal 2-state HMM on a stream of log returns.

    ``update(ret)`` returns P(high-variance state | returns so far), or ``None`` until the first
    fit (``min_history`` returns). A refit happens on the bar the history reaches
    ``min_history`` and then every ``refit_every`` bars, on the trailing ``window`` returns;
    the filter state is then the fit's forward-filter value at the current bar. On other bars
    the filter advances one forward step with the latest parameters.
    """

    __slots__ = (
        "window",
        "refit_every",
        "min_history",
        "max_iter",
        "tol",
        "_rets",
        "_n",
        "_since_fit",
        "params",
        "p_low",
        "p_high",
        "fits",
        "_c",
    )

    def __init__(
        self,
        window: int = 1260,
        refit_every: int = 21,
        min_history: int = 252,
        max_iter: int = 50,
        tol: float = 1e-7,
    ):
        if min_history < 10 or window < min_history or refit_every < 1:
            raise ConfigError(
                "HMMOverlay: need hmm_min_history >= 10, hmm_window >= hmm_min_history and "
                f"hmm_refit_every >= 1; got min_history={min_history!r}, window={window!r}, "
                f"refit_every={refit_every!r}"
            )
        self.window = int(window)
        self.refit_every = int(refit_every)
        self.min_history = int(min_history)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self._rets: deque[float] = deque(maxlen=self.window)
        self._n = 0
        self._since_fit = 0
        self.params: HMMParams | None = None
        self.p_low = 1.0
        self.p_high: float | None = None
        self.fits = 0
        self._c = None  # one-step filter constants of the latest fit (see _refit)

    def update(self, ret: float) -> float | None:
        """Feed one log return; return P(high-variance state) after it, or None before a fit."""
        self._rets.append(ret)
        self._n += 1
        if self._n < self.min_history:
            return None
        if (self.params is None or self._since_fit + 1 >= self.refit_every) and self._refit():
            return self.p_high
        if self.params is None:
            return None
        self._since_fit += 1
        a00, d0, a01, d1, m0, m1, h0, h1, k = self._c
        d_0 = ret - m0
        d_1 = ret - m1
        lr = k - d_1 * d_1 * h1 + d_0 * d_0 * h0  # log b1 - log b0
        if lr > _MAX_LOG_RATIO:
            lr = _MAX_LOG_RATIO
        elif lr < -_MAX_LOG_RATIO:
            lr = -_MAX_LOG_RATIO
        f1 = self.p_high
        v = (a01 + d1 * f1) * math.exp(lr)
        f1 = v / (a00 + d0 * f1 + v)
        self.p_high = f1
        self.p_low = 1.0 - f1
        return self.p_high

    def _refit(self) -> bool:
        """Refit on the trailing window; False (model unchanged) if the window is constant."""
        x = np.fromiter(self._rets, dtype=float, count=len(self._rets))
        try:
            fit = fit_hmm(x, max_iter=self.max_iter, tol=self.tol)
        except DataError:
            # constant window (e.g. synthetic flat prices): keep the previous model, if any
            self._since_fit = 0
            return False
        self.fits += 1
        self._since_fit = 0
        p = fit.params
        self.params = p
        (a00, a01), (a10, a11) = p.trans
        v0, v1 = p.variances
        # same arithmetic as _forward, one step: (a00, a10-a00, a01, a11-a01, means, 1/2v, k)
        self._c = (
            a00,
            a10 - a00,
            a01,
            a11 - a01,
            p.means[0],
            p.means[1],
            0.5 / v0,
            0.5 / v1,
            0.5 * (math.log(v0) - math.log(v1)),
        )
        self.p_low, self.p_high = fit.filtered_last
        return True
