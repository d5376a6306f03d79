"""Which path runs the HMM's EM iterations, and the driver of the compiled one.

:func:`strategies.hmm.fit_hmm` runs its EM iterations either in Python and NumPy or through
the numba kernels of :mod:`strategies.hmm_kernels` (the optional extra ``hmm``); both give the
same floats, bit for bit. :func:`select_hmm_backend` chooses (from ``BT_IBKR_HMM`` unless
told): ``auto`` (default: compiled when numba is installed and its kernels reproduce NumPy's
sums, dot products and ``math.log`` on this machine, else Python), ``numba`` (the same, but an
error when it cannot) or ``python``. Nothing here imports numba until a backend is selected,
which happens on the first fit: a run without ``use_hmm`` never pays for it.

:class:`CompiledEM` drives the kernels over one series; it works on the kernels' parameter
vector (means, variances, transitions, initial probabilities: see :mod:`strategies.hmm_kernels`)
so that it needs nothing from :mod:`strategies.hmm`.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from bt_ibkr.errors import ConfigError

__all__ = ["BACKEND_ENV", "CompiledEM", "HMMBackend", "compiled_kernels", "hmm_backend",
           "reset_hmm_backend", "select_hmm_backend"]

BACKEND_ENV = "BT_IBKR_HMM"  # auto (default) | numba | python
_BACKENDS = ("auto", "numba", "python")


@dataclass(frozen=True)
class HMMBackend:
    """Which path :func:`strategies.hmm.fit_hmm` runs its EM iterations on.

    ``name`` is ``"numba"`` (the compiled kernels) or ``"python"``; ``reason`` says why that
    one; ``load_s`` is what selecting it cost in this process (importing numba and compiling
    the kernels, or loading them from numba's on-disk cache, plus their self-check);
    ``from_cache`` is True when the compiled code came from that cache (None for Python).
    """

    name: str
    reason: str
    load_s: float = 0.0
    from_cache: bool | None = None


# [(HMMBackend, kernel module or None)] once selected; the entry is replaced in one
# assignment, so a reader never sees it half-made
_choice: list = [None]
_lock = threading.RLock()  # first fits in several threads select once


def select_hmm_backend(name: str | None = None) -> HMMBackend:
    """Choose the EM path: ``"auto"``, ``"numba"`` or ``"python"`` (module docstring); ``None``
    reads the environment variable ``BT_IBKR_HMM`` (default ``auto``). Loads the kernels (the
    first time on a machine: compiles them). Returns the :class:`HMMBackend` now in use.

    Raises :class:`ConfigError` for an unknown name, or for ``"numba"`` when numba is missing
    or the kernels differ from NumPy on this machine.
    """
    with _lock:
        return _select(name)


def _select(name: str | None) -> HMMBackend:
    if name is None:
        name = os.environ.get(BACKEND_ENV, "").strip().lower() or "auto"
        source = f"{BACKEND_ENV}={name}"
    else:
        source = repr(name)
    if name not in _BACKENDS:
        raise ConfigError(
            f"HMM backend {source} is not one of {', '.join(_BACKENDS)}; unset {BACKEND_ENV} "
            "or set it to one of them"
        )
    if name == "python":
        return _chose(HMMBackend("python", f"{source} asks for the pure-Python EM"))
    t0 = time.perf_counter()
    try:
        k = importlib.import_module("strategies.hmm_kernels")  # imports numba
    except ImportError as exc:
        why = f"numba is not installed ({exc}); pip install -e \".[hmm]\" compiles the EM"
        if name == "numba":
            raise ConfigError(f"HMM backend {source}: {why}") from exc
        return _chose(HMMBackend("python", why))
    try:
        k.warm_up()  # compiles, or loads from numba's cache
        differs = k.self_check()
    except Exception as exc:  # e.g. numba without SciPy, which its np.dot needs
        why = f"compiling the EM kernels failed ({type(exc).__name__}: {exc})"
        if name == "numba":
            raise ConfigError(f"HMM backend {source}: {why}; use {BACKEND_ENV}=python") from exc
        return _chose(HMMBackend("python", why))
    if differs:
        why = f"the compiled kernels' {differs} differs from NumPy's on this machine"
        if name == "numba":
            raise ConfigError(f"HMM backend {source}: {why}; use {BACKEND_ENV}=python")
        return _chose(HMMBackend("python", why))
    hits = sum(k.e_step.stats.cache_hits.values())
    chosen = HMMBackend(
        "numba", "numba is installed", time.perf_counter() - t0, from_cache=hits > 0
    )
    return _chose(chosen, k)


def _chose(backend: HMMBackend, kernels=None) -> HMMBackend:
    _choice[0] = (backend, kernels)
    return backend


def reset_hmm_backend() -> None:
    """Forget the selection: the next fit selects again from ``BT_IBKR_HMM`` (for a process
    that changes the variable after a fit). Returns None."""
    _choice[0] = None


def hmm_backend() -> HMMBackend:
    """The EM path in use, selected from ``BT_IBKR_HMM`` on the first call (see
    :func:`select_hmm_backend`, whose errors it raises)."""
    current = _choice[0]
    if current is None:
        with _lock:
            if _choice[0] is None:
                _select(None)
            current = _choice[0]
    return current[0]


def compiled_kernels():
    """The :mod:`strategies.hmm_kernels` module when the compiled path is in use, else None."""
    current = _choice[0]
    if current is None:
        hmm_backend()
        current = _choice[0]
    return current[1]


class CompiledEM:
    """The EM iterations of :func:`strategies.hmm.fit_hmm` through the kernels ``k`` over the
    series ``x``: the same operations in the same order as the Python path (so the same
    floats), with NumPy's ``exp`` and ``log`` called between the kernels. ``lim`` is the clip
    of |log b1/b0|, ``min_trans`` the floor of a transition probability. Work buffers are
    allocated once per series."""

    def __init__(self, k, x: np.ndarray, lim: float, min_trans: float):
        n = x.size
        self.k = k
        self.lim = float(lim)
        self.min_trans = float(min_trans)
        # a read-only or strided array would need another compiled signature: copy it
        self.x = x if x.flags.c_contiguous and x.flags.writeable else np.array(x, dtype=float)
        self.e = np.empty((2, n))  # emissions(): the arguments of exp
        self.r = np.empty((2, n))  # their exp
        self.lmax = np.empty(n)
        self.w = np.empty((8, n))  # e_step()'s rows
        self.sums = np.empty(4)
        self.logmix = np.empty(n)
        self.sq = np.empty((2, n))

    def run(
        self, prm: np.ndarray, max_iter: int, tol: float, floor: float
    ) -> tuple[np.ndarray, int, bool]:
        """EM from the parameter vector ``prm`` (not modified): returns (parameter vector,
        iterations, converged), as the Python path returns them."""
        k = self.k
        x, e, r, w, sums, logmix, lmax, sq = (
            self.x, self.e, self.r, self.w, self.sums, self.logmix, self.lmax, self.sq
        )
        prm = np.array(prm, dtype=float)
        st = np.array([floor, tol * x.size, self.lim, self.min_trans, -math.inf, 0.0])
        k.emissions(x, prm, self.lim, e, lmax)
        converged = False
        it = 0
        for it in range(1, max_iter + 1):  # noqa: B007 - it is reported after the loop
            np.exp(e, out=r)
            k.e_step(r, e, prm, w, sums)
            np.log(w[2], out=logmix)
            done = k.m_step(x, w, logmix, lmax, sums, prm, st, e, sq)
            if done:
                converged = done == 1
                break
        return prm, it, converged

    def filter_and_loglik(self, prm: np.ndarray) -> tuple[float, float]:
        """Returns (P(s = 1) at the last observation, log-likelihood) under ``prm``."""
        prm = np.array(prm, dtype=float)
        self.k.emissions(self.x, prm, self.lim, self.e, self.lmax)
        np.exp(self.e, out=self.r)
        self.k.e_step(self.r, self.e, prm, self.w, self.sums)
        np.log(self.w[2], out=self.logmix)
        return float(self.w[0, -1]), float(self.k.loglik_sum(self.logmix, self.lmax))
