"""Parity: one Strategy over the same bars through BackBroker and through IB, compared bar by
bar, and live sessions replayed through the backtest.

* :mod:`~bt_ibkr.parity.recorder`: ``ParityRecorder`` analyzer -> ``Recording``;
* :mod:`~bt_ibkr.parity.paths`: ``run_backtest_path`` / ``run_ib_path`` (``ParityConfig``);
* :mod:`~bt_ibkr.parity.diff`: ``compare`` -> ``ParityReport``;
* :mod:`~bt_ibkr.parity.report`: the HTML page;
* :mod:`~bt_ibkr.parity.run`: ``run_parity`` (both paths + compare) and ``replay``.
"""
