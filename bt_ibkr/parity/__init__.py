"""Parity: one Strategy over the same bars through BackBroker and through IB, compared bar by
bar, and recorded live sessions (:mod:`bt_ibkr.records`) replayed through the backtest.

* :mod:`~bt_ibkr.parity.paths`: ``run_backtest_path`` / ``run_ib_path`` / ``run_ib_feeds``
  (``ParityConfig``);
* :mod:`~bt_ibkr.parity.restart`: ``run_ib_path_killed``, the IB path killed mid-run (an order
  in flight) and restarted through the live path's journal recovery;
* :mod:`~bt_ibkr.parity.diff`: ``compare`` -> ``ParityReport``;
* :mod:`~bt_ibkr.parity.report`: the HTML page;
* :mod:`~bt_ibkr.parity.run`: ``run_parity`` (both paths + compare), ``load_frames``;
* :mod:`~bt_ibkr.parity.sessions`: ``replay`` of session records (and the record readers,
  re-exported from :mod:`bt_ibkr.records.sessions`);
* :mod:`~bt_ibkr.parity.stream_diff`: ``compare`` over streams, one chunk at a time.

Imports backtrader, bt_ibkr.ib and the simulator; ``feeds`` and ``strategies`` only inside
functions (they sit above the library).
"""
