"""Futures: the roll registry, back-adjusted continuous series (from given bars or from IB's
individual contracts: ``bt_ibkr.data.futures_contracts``), IB continuous history and the close-out guard. See
docs/SETUP.md (Futures) for what is built, simulated and untried."""
