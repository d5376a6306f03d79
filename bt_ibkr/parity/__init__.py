"""Parity: one Strategy over the same bars through BackBroker and through IB, compared bar by
bar, and live sessions recorded and replayed through the backtest.

* :mod:`~bt_ibkr.parity.recorder`: ``ParityRecorder`` analyzer -> ``Recording``;
* :mod:`~bt_ibkr.parity.paths`: ``run_backtest_path`` / ``run_ib_path`` / ``run_ib_feeds``
  (``ParityConfig``);
* :mod:`~bt_ibkr.parity.restart`: ``run_ib_path_killed``, the IB path killed mid-run (an order
  in flight) and restarted through the live path's journal recovery;
* :mod:`~bt_ibkr.parity.diff`: ``compare`` -> ``ParityReport``;
* :mod:`~bt_ibkr.parity.report`: the HTML page;
* :mod:`~bt_ibkr.parity.run`: ``run_parity`` (both paths + compare), ``load_frames``;
* :mod:`~bt_ibkr.parity.sessions`: session records of live runs and ``replay``;
* :mod:`~bt_ibkr.parity.session_files`: a record's bar file, rotated into gzip'd parts;
* :mod:`~bt_ibkr.parity.stream_diff`: ``compare`` over streams, one chunk at a time;
* :mod:`~bt_ibkr.parity.retention`: upkeep of a sessions folder, deleting/archiving old ones;
* :mod:`~bt_ibkr.parity.live_tearsheet`: the quantstats tearsheet from session records.

Imports backtrader, bt_ibkr.ib and the simulator; ``feeds`` and ``strategies`` only inside
functions (they sit above the library).
"""
