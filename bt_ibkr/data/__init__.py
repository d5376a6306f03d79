"""Historical bars for research and backtests: IBKRDataProvider and the backtest source chain."""
