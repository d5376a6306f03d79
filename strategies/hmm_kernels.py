"""Compiled kernels of the HMM's EM (optional extra ``hmm``: numba), bit-identical to NumPy.

:func:`strategies.hmm.fit_hmm` runs its EM iterations through these kernels when numba is
installed (``pip install -e ".[hmm]"``); without numba it runs the same iterations in Python and
NumPy. Both give the same floats, bit for bit, and therefore the same labels (tested on every
refit window of ^GSPC, ^IXIC and WTI), because each kernel performs the same IEEE operations in
the same order as the NumPy expression it replaces:

* the element-wise arithmetic (+, -, *, /, min, max) is exact per element, so a loop gives what
  NumPy's ufuncs give (compiled without ``fastmath``: no reassociation, no fused multiply-add);
* the sums replicate NumPy's pairwise summation (:func:`pairwise_sum`, NumPy's
  ``pairwise_sum`` with its 8 accumulators and 128-element blocks);
* the dot products are numba's ``np.dot``, which calls BLAS ``ddot`` as NumPy's does (numba
  through SciPy's OpenBLAS, NumPy through its own: the same kernel, checked below);
* ``math.log`` is the C library's, as in Python;
* what cannot be replicated stays in NumPy, called by the driver
  (:class:`strategies.hmm_backend.CompiledEM`) between the kernels: ``np.exp`` and ``np.log``
  (NumPy's own SIMD versions, which differ from the C library's in the last bit for a few
  percent of inputs).

:func:`self_check` compares the sums, the dot products, ``math.log`` and NumPy's exp(0) = 1
with NumPy and Python on this machine before the kernels are used; where one differs, the
pure-Python path runs instead. Compiled code is cached on disk (``cache=True``, in
``__pycache__`` beside this file or numba's user cache): the first run on a machine compiles
for about 2-5 s, later processes load it in a fraction of a second.

Importing this module imports numba; :mod:`strategies.hmm` imports it only on the first fit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "e_step",
    "emissions",
    "loglik_sum",
    "m_step",
    "pairwise_sum",
    "self_check",
    "warm_up",
]

_BLOCK = 128  # NumPy's PW_BLOCKSIZE


@njit(cache=True)
def _block(a, lo, n):
    """NumPy's pairwise sum of a[lo:lo+n] for n <= 128: a plain loop below 8 elements, else
    8 accumulators (numpy/_core/src/umath/loops_utils.h.src)."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    m = n - n % 8
    while i < m:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def _pairwise(a, lo, n):
    """NumPy's pairwise sum of a[lo:lo+n]: blocks of at most 128 elements, split in halves
    rounded down to a multiple of 8, left + right. NumPy recurses; this walks the same tree
    with an explicit stack (numba's on-disk cache mishandles recursive functions)."""
    if n <= _BLOCK:
        return _block(a, lo, n)
    depth = 64  # a tree over 2**63 elements is at most 57 deep
    s_lo = np.empty(depth, np.int64)
    s_n = np.empty(depth, np.int64)
    s_state = np.empty(depth, np.int64)  # 0: left half next, 1: right half next
    s_left = np.empty(depth)
    top = 0
    s_lo[0] = lo
    s_n[0] = n
    s_state[0] = 0
    while True:
        cn = s_n[top]
        if cn > _BLOCK:  # an inner node: descend into its next half
            n2 = cn // 2
            n2 -= n2 % 8
            if s_state[top] == 0:
                s_lo[top + 1] = s_lo[top]
                s_n[top + 1] = n2
            else:
                s_lo[top + 1] = s_lo[top] + n2
                s_n[top + 1] = cn - n2
            top += 1
            s_state[top] = 0
            continue
        val = _block(a, s_lo[top], cn)  # a leaf: hand its sum up the tree
        top -= 1
        while top >= 0 and s_state[top] == 1:
            val = s_left[top] + val
            top -= 1
        if top < 0:
            return val
        s_left[top] = val
        s_state[top] = 1


@njit(cache=True)
def pairwise_sum(a):
    """``float(a.sum())`` for a contiguous 1-D float64 array, bit for bit."""
    return _pairwise(a, 0, a.size)


# the parameter vector the kernels share: means, variances, transitions, initial probabilities
M0, M1, V0, V1, A00, A01, A10, A11, I0, I1 = range(10)
# the EM's scalar state (see m_step): inputs, then outputs
FLOOR, TOL_N, LIM, MIN_TRANS, PREV_LL, LL = range(6)
LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def emissions(x, prm, lim, e, lmax):
    """Gaussian log densities l0, l1 of ``x`` under ``prm`` and what the EM needs from them,
    into ``e`` (2 x n) and ``lmax`` (n), with
    ``l_k = -0.5 * (log(2 pi) + log(v_k) + (x - m_k) ** 2 / v_k)`` and lmax = max(l0, l1):
    e[0] = clip(l1 - l0, -lim, lim) (its exp is the likelihood ratio); e[1] = the one of
    l0 - lmax, l1 - lmax that is not 0 (l0 - l1 where l1 > l0, i.e. where e[0] > 0, else
    l1 - l0). The other one is exactly 0, whose exp is exactly 1: NumPy's exp is needed
    for e[1] only (:func:`self_check` makes sure exp(0) is 1 here). Returns None."""
    m0 = prm[M0]
    m1 = prm[M1]
    v0 = prm[V0]
    v1 = prm[V1]
    c0 = LOG_2PI + math.log(v0)
    c1 = LOG_2PI + math.log(v1)
    for i in range(x.size):
        d = x[i] - m0
        l0 = -0.5 * (c0 + d * d / v0)
        d = x[i] - m1
        l1 = -0.5 * (c1 + d * d / v1)
        r = l1 - l0
        if l0 >= l1:  # lmax = l0: exp(l0 - lmax) = 1
            lm = l0
            e[1, i] = l1 - lm
        else:
            lm = l1
            e[1, i] = l0 - lm
        if r < -lim:
            r = -lim
        if r > lim:
            r = lim
        e[0, i] = r
        lmax[i] = lm


@njit(cache=True, inline="always")
def _finish(i, n, f, qv, ratio, a00, a01, a10, a11, g0, g1, F0, F1, y):
    """The E-step's outputs at index i, once f[i], q[i] and q[i+1] are known."""
    fi = f[i]
    h = fi * qv[i]
    g = h / ((1.0 - fi) + h)
    g1[i] = g
    g0[i] = 1.0 - g
    if i < n - 1:
        yk = ratio[i + 1] * qv[i + 1]
        y[i] = yk
        b0 = 1.0 - fi
        inv = 1.0 / (b0 * (a00 + a01 * yk) + fi * (a10 + a11 * yk))
        F0[i] = b0 * inv
        F1[i] = fi * inv


@njit(cache=True)
def e_step(r, e, prm, w, sums):
    """One E-step on ``r`` = exp of :func:`emissions`' rows ``e`` (the likelihood ratio and
    the exp of the non-zero one of l0 - lmax, l1 - lmax) under the transitions and initial
    probabilities in ``prm``.

    Writes into ``w`` (8 x n): w[0] = f1 (forward filter P(s_t = 1 | x_0..t)), w[1] = q
    (backward ratio beta_t(1) / beta_t(0)), w[2] = the one-step predictive mixture whose log
    plus lmax is the log-likelihood term, w[3] = g0, w[4] = g1 (smoothed state
    probabilities), w[5, :n-1] = F0 and w[6, :n-1] = F1 (normalised forward weights of the
    expected transitions), w[7, :n-1] = y = ratio[1:] * q[1:]; and into ``sums`` the sums of
    F0, F1, g0 and g1. Returns None.

    The forward step k and the backward step n-1-k share a loop iteration (each is a chain of
    dependent divisions); from the middle on, the outputs at both indices whose inputs are
    then complete are computed in the same iteration, which fills the chains' idle cycles."""
    n = r.shape[1]
    ratio = r[0]
    rest = r[1]
    up = e[0]  # > 0 where l1 > l0: exp(l0 - lmax) = rest, exp(l1 - lmax) = 1; else the reverse
    f = w[0]
    qv = w[1]
    mix = w[2]
    g0 = w[3]
    g1 = w[4]
    F0 = w[5]
    F1 = w[6]
    y = w[7]
    a00 = prm[A00]
    a01 = prm[A01]
    a10 = prm[A10]
    a11 = prm[A11]
    i1 = prm[I1]
    d0 = a10 - a00
    d1 = a11 - a01
    v = i1 * ratio[0]
    f1 = v / (prm[I0] + v)
    f[0] = f1
    if up[0] > 0.0:
        mix[0] = (1.0 - i1) * rest[0] + i1 * 1.0
    else:
        mix[0] = (1.0 - i1) * 1.0 + i1 * rest[0]
    q = 1.0
    qv[n - 1] = 1.0
    for k in range(1, n):
        p1 = a01 + d1 * f1  # P(s_k = 1 | x_0..k-1)
        if up[k] > 0.0:  # (1 - p1) exp(l0 - lmax) + p1 exp(l1 - lmax)
            mix[k] = (1.0 - p1) * rest[k] + p1 * 1.0
        else:
            mix[k] = (1.0 - p1) * 1.0 + p1 * rest[k]
        v = p1 * ratio[k]
        f1 = v / (a00 + d0 * f1 + v)
        f[k] = f1
        j = n - 1 - k
        wb = ratio[j + 1] * q
        q = (a10 + a11 * wb) / (a00 + a01 * wb)
        qv[j] = q
        if k >= j:
            _finish(k, n, f, qv, ratio, a00, a01, a10, a11, g0, g1, F0, F1, y)
            if j != k:
                _finish(j, n, f, qv, ratio, a00, a01, a10, a11, g0, g1, F0, F1, y)
    sums[0] = _pairwise(F0, 0, n - 1)
    sums[1] = _pairwise(F1, 0, n - 1)
    sums[2] = _pairwise(g0, 0, n)
    sums[3] = _pairwise(g1, 0, n)


@njit(cache=True)
def loglik_sum(logmix, lmax):
    """``float((lmax + logmix).sum())``, bit for bit; overwrites ``logmix`` with the terms."""
    for i in range(logmix.size):
        logmix[i] = lmax[i] + logmix[i]
    return _pairwise(logmix, 0, logmix.size)


@njit(cache=True)
def m_step(x, w, logmix, lmax, sums, prm, st, e, sq):
    """The rest of an EM iteration after :func:`e_step` and ``np.log(w[2], out=logmix)``:
    the log-likelihood (into st[LL]), the M-step's new parameters (into ``prm``), and the
    next iteration's :func:`emissions` (into ``e`` and ``lmax``).

    Returns 2 when a state collapsed (``prm`` left as it was), 1 when the log-likelihood
    improved by less than st[TOL_N] (``prm`` updated: the fit is done), else 0 (``prm``
    updated, st[PREV_LL] = this log-likelihood, ``e`` ready for the next iteration)."""
    n = x.size
    ll = loglik_sum(logmix, lmax)
    st[LL] = ll
    a00 = prm[A00]
    a01 = prm[A01]
    a10 = prm[A10]
    a11 = prm[A11]
    F0 = w[5, : n - 1]
    F1 = w[6, : n - 1]
    y = w[7, : n - 1]
    g0 = w[3]
    g1 = w[4]
    s00 = a00 * sums[0]
    s01 = a01 * np.dot(F0, y)
    s10 = a10 * sums[1]
    s11 = a11 * np.dot(F1, y)
    r0 = s00 + s01
    r1 = s10 + s11
    w0 = sums[2]
    w1 = sums[3]
    if not (w0 > 0.0 and w1 > 0.0 and r0 > 0.0 and r1 > 0.0):
        return 2
    m0 = np.dot(g0, x) / w0
    m1 = np.dot(g1, x) / w1
    for i in range(n):
        d = x[i] - m0
        sq[0, i] = d * d
        d = x[i] - m1
        sq[1, i] = d * d
    floor = st[FLOOR]
    v0 = np.dot(g0, sq[0]) / w0
    v1 = np.dot(g1, sq[1]) / w1
    v0 = floor if floor > v0 else v0  # Python's max(v0, floor), as fit_hmm's Python path
    v1 = floor if floor > v1 else v1
    lo = st[MIN_TRANS]
    hi = 1.0 - lo
    t01 = s01 / r0
    t10 = s10 / r1
    t01 = lo if lo > t01 else t01  # min(max(t, lo), hi)
    t01 = hi if hi < t01 else t01
    t10 = lo if lo > t10 else t10
    t10 = hi if hi < t10 else t10
    prm[M0] = m0
    prm[M1] = m1
    prm[V0] = v0
    prm[V1] = v1
    prm[A00] = 1.0 - t01
    prm[A01] = t01
    prm[A10] = t10
    prm[A11] = 1.0 - t10
    prm[I0] = g0[0]
    prm[I1] = g1[0]
    if abs(ll - st[PREV_LL]) < st[TOL_N]:
        return 1
    st[PREV_LL] = ll
    emissions(x, prm, st[LIM], e, lmax)
    return 0


def warm_up() -> None:
    """Call every kernel once on a small input with the types fit_hmm uses: compiles them, or
    loads them from the on-disk cache. Returns None."""
    n = 16
    x = np.linspace(-0.01, 0.02, n)
    prm = np.array([0.0, 0.001, 1e-4, 4e-4, 0.97, 0.03, 0.06, 0.94, 0.5, 0.5])
    st = np.array([1e-8, 1e-6, 700.0, 1e-6, -np.inf, 0.0])
    e = np.empty((2, n))
    lmax = np.empty(n)
    emissions(x, prm, 700.0, e, lmax)
    r = np.exp(e)
    w = np.empty((8, n))
    sums = np.empty(4)
    e_step(r, e, prm, w, sums)
    logmix = np.log(w[2])
    m_step(x, w, logmix, lmax, sums, prm, st, e, np.empty((2, n)))
    loglik_sum(logmix, lmax)
    pairwise_sum(x)


@njit(cache=True)
def _dot(a, b):
    return np.dot(a, b)


@njit(cache=True)
def _log(v):
    return math.log(v)


def self_check() -> str:
    """Compare what the kernels replicate with NumPy and Python on this machine, bit for bit,
    on fixed pseudo-random inputs: the pairwise sum (every length class it distinguishes), the
    dot product (numba's BLAS against NumPy's, also on unaligned slices), ``math.log``, and
    that NumPy's exp(0) is exactly 1.
    Returns "" when all agree, else what differs."""
    if not (np.exp(np.zeros(37)) == 1.0).all():
        return "exp(0)"
    rng = np.random.default_rng(20231)
    for n in (1, 7, 8, 9, 16, 17, 31, 32, 33, 127, 128, 129, 255, 256, 1259, 1260, 2521):
        for _ in range(3):
            a = rng.normal(size=n + 3) * np.exp(rng.normal(size=n + 3) * 4.0)
            b = rng.normal(size=n + 3)
            for lo in (0, 1, 3):
                if pairwise_sum(a[lo : lo + n]) != float(a[lo : lo + n].sum()):
                    return f"the pairwise sum of {n} values"
                if _dot(a[lo : lo + n], b[:n]) != float(a[lo : lo + n] @ b[:n]):
                    return f"the dot product of {n} values"
    for v in np.exp(rng.normal(size=200) * 10.0):
        if _log(float(v)) != math.log(float(v)):
            return "math.log"
    return ""
