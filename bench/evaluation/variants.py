"""What the evaluation runs: the Strategy's variants (the default, the candidates of the decision,
the previous default, the ablation rows), the cost levels and the decision rule.
"""


from __future__ import annotations

COSTS = (5.0, 10.0)


COST_TABLE = (0.0, 5.0, 10.0, 20.0)


LIVE_DAYS = 730  # calendar days of history a daily live session warms up on


REGIMES = ("bull_quiet", "bull_volatile", "range", "bear_quiet", "crisis")


RISK_OFF = ("bull_volatile", "bear_quiet", "crisis")  # high volatility or a down trend


DECISION_RULE = (
    "among CANDIDATES, the highest worst-case Sharpe difference against the trend sleeve alone "
    "over ^GSPC, ^IXIC, WTI, SYN_REGIME, SYN_WALK and the battery's two means at 5 bp a side; "
    "within 0.02 of the best, the lowest mean turnover"
)


# ------------------------------------------------------------------------------ variants
def _rows(**w: float) -> dict:
    from strategies import SLEEVES

    row = {s: float(w.get(s, 0.0)) for s in SLEEVES}
    return {r: dict(row) for r in REGIMES}


def _v1() -> dict:
    """The previous default (sleeve switching), exactly."""
    from strategies import V1_CAPS, V1_WEIGHTS

    return {
        "weights": V1_WEIGHTS, "caps": V1_CAPS, "exposure": {r: 1.0 for r in REGIMES},
        "crisis_immediate": False, "rebound_stop_low": 0, "rebound_max_hold": 0,
        "meanrev_min_hold": 1, "band": 0.10, "band_relative": False,
        "vol_rank_window": 504, "vol_rank_min": 252,
    }


_NEW_MECHANICS = {"crisis_immediate": True, "rebound_stop_low": 10, "rebound_max_hold": 5,
                  "meanrev_min_hold": 5, "band": 0.15, "band_relative": True,
                  "vol_rank_window": 252, "vol_rank_min": None}


_ONES = {r: 1.0 for r in REGIMES}


_CAPS1 = {r: 1.0 for r in REGIMES}


def candidates() -> dict[str, dict]:
    """The regime-aware structures the decision chooses among (name -> full params)."""
    from strategies import V1_CAPS, V1_WEIGHTS

    return {
        # the trend sleeve; the regime layer takes it to cash in crisis
        "trend + crisis cash": {"weights": _rows(trend=1.0), "caps": _CAPS1,
                                "exposure": {**_ONES, "crisis": 0.0}, **_NEW_MECHANICS},
        # half trend, half volatility-managed hold; cash in crisis
        "trend/hold + crisis cash": {"weights": _rows(trend=0.5, hold=0.5), "caps": _CAPS1,
                                     "exposure": {**_ONES, "crisis": 0.0}, **_NEW_MECHANICS},
        # regimes as the only signal: a volatility-managed hold scaled by regime
        "hold scaled by regime": {"weights": _rows(hold=1.0), "caps": _CAPS1,
                                  "exposure": {**_ONES, "range": 0.5, "bear_quiet": 0.0,
                                               "crisis": 0.0}, **_NEW_MECHANICS},
        # v1's sleeve switching with every mechanical fix (stopped rebound, min hold, band, ...)
        "v1 fixed": {"weights": V1_WEIGHTS, "caps": V1_CAPS, "exposure": _ONES,
                     **_NEW_MECHANICS},
    }


def main_variants() -> dict[str, dict]:
    """The rows of the main tables and of the walk-forward pool (name -> params)."""
    return {
        "default": {},
        "trend": {"sleeves": "trend", "use_regimes": False},
        "hold": {"sleeves": "hold", "use_regimes": False},
        "v1": _v1(),
        **candidates(),
    }


POOL = ("trend + crisis cash", "trend/hold + crisis cash", "hold scaled by regime", "v1 fixed",
        "trend", "hold")


def ablation_variants() -> dict[str, tuple[str, dict]]:
    """Name -> (the row it is compared with, params): each change off in the default, on in v1."""
    v1 = _v1()
    crisis_rebound = {"weights": {"crisis": {"trend": 0.0, "rebound": 1.0}},
                      "exposure": {"crisis": 1.0}, "caps": {"crisis": 0.25}}
    return {
        "default: no regime layer": ("default", {"use_regimes": False}),
        "default: absolute band 0.10": ("default", {"band": 0.10, "band_relative": False}),
        "default: crisis waits for the dwell": ("default", {"crisis_immediate": False}),
        "default: rank 504, from 252 values (v1)": ("default", {"vol_rank_window": 504,
                                                                "vol_rank_min": 252}),
        "default: rank 504, full": ("default", {"vol_rank_window": 504}),
        "default: crisis = stopped rebound": ("default", crisis_rebound),
        "default: crisis = unstopped rebound": ("default", {**crisis_rebound,
                                                          "rebound_stop_low": 0,
                                                          "rebound_max_hold": 0}),
        "default + HMM overlay (experimental)": ("default", {"use_hmm": True}),
        "default, acting one bar later": ("default", {"decision_delay": 1}),
        "v1 + stopped rebound": ("v1", {**v1, "rebound_stop_low": 10, "rebound_max_hold": 5}),
        "v1 + meanrev min hold 5": ("v1", {**v1, "meanrev_min_hold": 5}),
        "v1 + no meanrev in bull rows": ("v1", {**v1, "weights": {
            **v1["weights"],
            "bull_quiet": {**v1["weights"]["bull_quiet"], "meanrev": 0.0},
            "bull_volatile": {**v1["weights"]["bull_volatile"], "meanrev": 0.0}}}),
        "v1 + relative band 0.15": ("v1", {**v1, "band": 0.15, "band_relative": True}),
        "v1 + crisis at once": ("v1", {**v1, "crisis_immediate": True}),
        "v1 + crisis cash": ("v1", {**v1, "exposure": {**_ONES, "crisis": 0.0}}),
        "v1 + full 252 rank": ("v1", {**v1, "vol_rank_window": 252, "vol_rank_min": None}),
        "v1 + all of the above but crisis cash": ("v1", candidates()["v1 fixed"]),
    }
