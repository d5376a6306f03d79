"""Options: chains from IB (``chain``), greeks from tickers (``greeks``) and option expiry in a
backtest (``expiry``)."""

from bt_ibkr.options.chain import OptionChain, fetch_chain, pick_option
from bt_ibkr.options.expiry import ExpiryRule, OptionExpiry, settle_expired
from bt_ibkr.options.greeks import Greeks, greeks_of

__all__ = ["ExpiryRule", "Greeks", "OptionChain", "OptionExpiry", "fetch_chain", "greeks_of",
           "pick_option", "settle_expired"]
