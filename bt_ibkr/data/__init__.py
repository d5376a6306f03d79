"""Historical bars outside Cerebro: ``provider`` (IBKRDataProvider: cache -> IB -> yfinance) and
``history`` (the backtest's source chain). Imports ``bt_ibkr.ib``, the ground and the bar
sources of ``feeds`` (yfinance, CSV, the arch sample)."""
