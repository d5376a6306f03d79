"""Regime-aware ensemble strategy for backtrader and its incremental building blocks.

``RegimeAwareEnsemble`` is the Strategy (DESIGN §8); ``REGIMES`` the five regime labels;
``label_series`` runs the regime classifier over a list of closes (tests, notebooks).
"""

from .allocation import (
    DEFAULT_CAPS,
    DEFAULT_EXPOSURE,
    DEFAULT_WEIGHTS,
    V1_CAPS,
    V1_WEIGHTS,
    AllocationTable,
    parse_sleeves,
    resolve_table,
    weighted_sleeves,
)
from .ensemble import RegimeAwareEnsemble
from .hmm import HMMFit, HMMOverlay, HMMParams, fit_hmm, forward_filter
from .regime import (
    REGIMES,
    WARMUP,
    DwellFilter,
    RegimeClassifier,
    RegimeParams,
    label_series,
    vol_high_next,
    warmup_bars,
)
from .sleeves import SLEEVES, SleeveParams, Sleeves

__all__ = [
    "AllocationTable",
    "DEFAULT_CAPS",
    "DEFAULT_EXPOSURE",
    "DEFAULT_WEIGHTS",
    "V1_CAPS",
    "V1_WEIGHTS",
    "REGIMES",
    "SLEEVES",
    "WARMUP",
    "DwellFilter",
    "HMMFit",
    "HMMOverlay",
    "HMMParams",
    "RegimeAwareEnsemble",
    "RegimeClassifier",
    "RegimeParams",
    "SleeveParams",
    "Sleeves",
    "fit_hmm",
    "forward_filter",
    "label_series",
    "parse_sleeves",
    "resolve_table",
    "vol_high_next",
    "warmup_bars",
    "weighted_sleeves",
]
