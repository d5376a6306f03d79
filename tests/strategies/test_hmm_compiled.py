"""The compiled HMM EM (optional extra ``hmm``: numba) against the pure-Python path.

The two paths must give the same floats bit for bit, hence the same labels: every refit's fit
(parameters, log-likelihood, iterations, last filtered probability) and every bar's regime,
P(high) and overlay state are compared over ^GSPC, ^IXIC and WTI. Without numba the Python
path runs and says why; ``BT_IBKR_HMM`` chooses the path and a bad value is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import strategies.hmm as hmm_mod
from bt_ibkr.errors import ConfigError
from strategies.hmm import HMMParams, fit_hmm, hmm_backend, select_hmm_backend
from strategies.hmm_backend import reset_hmm_backend

ROOT = Path(__file__).resolve().parents[2]


def _numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


needs_numba = pytest.mark.skipif(
    not _numba_importable(), reason="numba is not installed (pip install -e '.[hmm]')"
)


@pytest.fixture(autouse=True)
def _restore_backend(monkeypatch):
    """Each test starts and ends on the path BT_IBKR_HMM (or auto) selects."""
    monkeypatch.delenv("BT_IBKR_HMM", raising=False)
    yield
    monkeypatch.undo()
    select_hmm_backend()


def _closes(name: str) -> list[float]:
    if name == "WTI":
        from bench.evaluation.series import wti

        return wti()["close"].tolist()
    from feeds.sample import load_sample

    return load_sample(name)["close"].tolist()


def _run(closes, backend: str, monkeypatch):
    """Per-bar (regime, P(high), overlay on) and every refit's HMMFit, on ``backend``."""
    from strategies.regime import RegimeClassifier, RegimeParams

    assert select_hmm_backend(backend).name == backend
    fits = []
    real = fit_hmm

    def recording(x, *args, **kwargs):
        fits.append(real(x, *args, **kwargs))
        return fits[-1]

    monkeypatch.setattr(hmm_mod, "fit_hmm", recording)
    clf = RegimeClassifier(RegimeParams(use_hmm=True))
    rows = [(clf.update(c), clf.p_high, clf.hmm_on) for c in closes]
    monkeypatch.setattr(hmm_mod, "fit_hmm", real)
    return rows, fits


@needs_numba
@pytest.mark.slow
@pytest.mark.parametrize("series", ["^GSPC", "^IXIC", "WTI"])
def test_compiled_em_gives_the_python_paths_fits_and_labels(series, monkeypatch):
    closes = _closes(series)
    rows_c, fits_c = _run(closes, "numba", monkeypatch)
    rows_p, fits_p = _run(closes, "python", monkeypatch)
    assert len(fits_c) == len(fits_p) == (len(closes) - 1 - 1260) // 21 + 1
    for i, (c, p) in enumerate(zip(fits_c, fits_p, strict=True)):
        assert c == p, f"{series} refit {i}: {c} != {p}"  # params, loglik, n_iter, last
    assert sum(on for _, _, on in rows_c) > 0  # the overlay promotes somewhere
    for i, (c, p) in enumerate(zip(rows_c, rows_p, strict=True)):
        assert c == p, f"{series} bar {i + 1}: {c} != {p}"


def _windows():
    """Seeded synthetic windows, including ones that hit the parameter floors."""
    rng = np.random.default_rng(5)
    out = [rng.normal(0.0, 0.01, n) for n in (10, 11, 17, 64, 129, 300, 1260, 2600)]
    calm = rng.normal(0.0, 1e-4, 500)
    calm[250] = 0.2  # one huge outlier: a state collapses onto it
    out.append(calm)
    out.append(np.r_[np.zeros(200), rng.normal(0.0, 0.02, 60)])  # flat, then volatile
    out.append(np.round(rng.normal(0.0, 0.01, 400), 3))  # ties
    return out


@needs_numba
def test_compiled_fit_equals_python_fit_on_edge_windows():
    for forced in (False, True):
        for i, x in enumerate(_windows()):
            kw = {"max_iter": 50, "tol": 0.0} if forced else {}
            select_hmm_backend("numba")
            c = fit_hmm(x, **kw)
            select_hmm_backend("python")
            p = fit_hmm(x, **kw)
            assert c == p, (forced, i)
    swapped = HMMParams(means=(0.0, 0.0), variances=(4e-4, 4e-5),
                        trans=((0.95, 0.05), (0.05, 0.95)), init=(0.5, 0.5))
    x = _windows()[6]
    select_hmm_backend("numba")
    c = fit_hmm(x, init=swapped, max_iter=7)
    select_hmm_backend("python")
    assert c == fit_hmm(x, init=swapped, max_iter=7) and c.n_iter == 7
    # state 1 unreachable (no transition into it, zero initial weight): it collapses at once
    # and the start is kept, on both paths
    dead = HMMParams(means=(0.0, 5.0), variances=(1e-4, 1e-12),
                     trans=((1.0, 0.0), (0.5, 0.5)), init=(1.0, 0.0))
    p = fit_hmm(x, init=dead)
    select_hmm_backend("numba")
    c = fit_hmm(x, init=dead)
    assert c == p and (c.n_iter, c.converged) == (1, False) and c.params.means == (5.0, 0.0)


@needs_numba
def test_compiled_fit_accepts_read_only_and_strided_input():
    x = _windows()[6]
    select_hmm_backend("numba")
    ro = x.copy()
    ro.flags.writeable = False
    strided = np.repeat(x, 2)[::2]
    assert fit_hmm(ro) == fit_hmm(strided) == fit_hmm(list(x)) == fit_hmm(x)


def test_without_numba_the_python_path_runs_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "strategies.hmm_kernels", raising=False)
    chosen = select_hmm_backend()
    assert chosen.name == "python" and "numba is not installed" in chosen.reason
    assert '.[hmm]' in chosen.reason and hmm_backend() == chosen
    with pytest.raises(ConfigError, match=r"HMM backend 'numba': numba is not installed"):
        select_hmm_backend("numba")
    x = _windows()[6]
    fit = fit_hmm(x)
    assert fit.params.variances[0] < fit.params.variances[1] and fit.n_iter > 1


def test_the_environment_variable_chooses_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("BT_IBKR_HMM", "Python")
    assert select_hmm_backend().name == "python"
    assert "BT_IBKR_HMM=python" in hmm_backend().reason
    monkeypatch.setenv("BT_IBKR_HMM", "cuda")
    with pytest.raises(ConfigError, match=r"BT_IBKR_HMM=cuda is not one of auto, numba, "
                                          r"python; unset BT_IBKR_HMM"):
        select_hmm_backend()
    with pytest.raises(ConfigError, match=r"'fast' is not one of"):
        select_hmm_backend("fast")


@needs_numba
def test_kernels_that_differ_from_numpy_are_not_used(monkeypatch):
    from strategies import hmm_kernels

    monkeypatch.setattr(hmm_kernels, "self_check", lambda: "the dot product of 16 values")
    chosen = select_hmm_backend("auto")
    assert chosen.name == "python"
    assert chosen.reason == ("the compiled kernels' the dot product of 16 values differs from "
                             "NumPy's on this machine")
    with pytest.raises(ConfigError, match="use BT_IBKR_HMM=python"):
        select_hmm_backend("numba")


@needs_numba
def test_kernels_that_fail_to_compile_leave_the_python_path(monkeypatch):
    from strategies import hmm_kernels

    def broken():
        raise RuntimeError("np.dot needs SciPy")

    monkeypatch.setattr(hmm_kernels, "warm_up", broken)
    chosen = select_hmm_backend("auto")
    assert (chosen.name, chosen.reason) == (
        "python", "compiling the EM kernels failed (RuntimeError: np.dot needs SciPy)")
    assert fit_hmm(_windows()[6]).n_iter > 1
    with pytest.raises(ConfigError, match=r"'numba': compiling the EM kernels failed"):
        select_hmm_backend("numba")


@needs_numba
def test_the_kernels_reproduce_numpy_here():
    from strategies import hmm_kernels

    assert hmm_kernels.self_check() == ""
    rng = np.random.default_rng(3)
    for n in (1, 5, 8, 100, 128, 129, 1000, 1259, 4097):
        a = rng.normal(size=n) * np.exp(rng.normal(size=n) * 6)
        assert hmm_kernels.pairwise_sum(a) == float(a.sum()), n


@needs_numba
@pytest.mark.slow
def test_compiled_code_is_cached_so_a_second_process_does_not_compile(tmp_path):
    code = ("from strategies.hmm import select_hmm_backend as s; b = s('numba'); "
            "print(b.name, b.from_cache)")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("BT_IBKR_HMM", None)
    runs = [subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert [r.stdout.split() for r in runs] == [["numba", "False"], ["numba", "True"]]
    assert any(tmp_path.rglob("*.nbi"))


def test_the_starts_statistics_are_numpys_to_the_bit():
    """fit_hmm's start takes NumPy's median, 75th percentile, means and variances through one
    partition and pairwise sums (less overhead on every refit): the same floats as NumPy."""
    from strategies.hmm import _mean, _median, _quantile, _var

    x = np.diff(np.log(np.asarray(_closes("^GSPC"))))
    rng = np.random.default_rng(8)
    windows = [x[end - n:end] for n in (10, 11, 252, 253, 1260) for end in range(n, x.size, 331)]
    windows += [rng.normal(size=n) * 10.0 ** rng.integers(-6, 3) for n in range(10, 140)]
    windows += [np.round(rng.normal(size=n), 1) for n in (10, 17, 64, 301)]  # ties
    for w in windows:
        dev = np.abs(w - np.median(w))
        assert _median(w) == float(np.median(w))
        assert _mean(w) == float(np.mean(w)) and _var(w) == float(np.var(w))
        for q in (0.0, 0.25, 0.5, 0.75, 0.99):
            assert _quantile(dev, q) == float(np.quantile(dev, q)), (w.size, q)


@pytest.mark.slow
def test_backtest_cli_names_a_bad_backend_in_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    from helpers.cli import run_backtest

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_HMM", "gpu")
    reset_hmm_backend()  # as in a fresh process: the first fit reads the variable
    code, out, err = run_backtest(["--param", "use_hmm=true", "--no-report"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1] == ("error: HMM backend BT_IBKR_HMM=gpu is not one of auto, numba, python; "
                         "unset BT_IBKR_HMM or set it to one of them"), err
    assert "Traceback" not in err
