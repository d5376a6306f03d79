"""Forex and base currency: IDEALPRO pair rules (:mod:`.pairs`) and the multi-currency
ledger that values cash and positions in the account's base currency (:mod:`.ledger`)."""

from bt_ibkr.fx.ledger import CurrencyLedger, Holding, MissingRateError
from bt_ibkr.fx.pairs import (
    FX_WHAT_TO_SHOW,
    IDEALPRO_MIN_UNITS,
    FxPair,
    history_what,
    is_odd_lot,
    parse_pair,
)

__all__ = ["FX_WHAT_TO_SHOW", "IDEALPRO_MIN_UNITS", "CurrencyLedger", "FxPair", "Holding",
           "MissingRateError", "history_what", "is_odd_lot", "parse_pair"]
