"""Options: chains from IB (``chain``), greeks from tickers (``greeks``), Black-Scholes
(``pricing``) and option expiry in a backtest (``expiry``)."""

from bt_ibkr.options.chain import OptionChain, fetch_chain, fetch_chain_async, pick_option
from bt_ibkr.options.expiry import (
    ExpiryRule,
    OptionCommInfo,
    OptionExpiry,
    OptionsBacktestBroker,
    settle_expired,
)
from bt_ibkr.options.greeks import Greeks, greeks_of

__all__ = ["ExpiryRule", "Greeks", "OptionChain", "OptionCommInfo", "OptionExpiry",
           "OptionsBacktestBroker", "fetch_chain", "fetch_chain_async", "greeks_of", "pick_option", "settle_expired"]
