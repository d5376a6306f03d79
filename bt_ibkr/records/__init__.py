"""Session records: what a live or paper Strategy saw and did, bar by bar, on disk.

* :mod:`~bt_ibkr.records.recorder`: ``ParityRecorder`` analyzer -> ``Recording`` of
  ``BarRecord`` (bars, decision, orders, fills, position, cash, value per bar);
* :mod:`~bt_ibkr.records.sessions`: a live run's record folder (``attach``, ``SessionWriter``)
  and its readers (``load_session``, ``iter_session``, ``find_sessions``, ``recorded_frames``);
* :mod:`~bt_ibkr.records.files`: a record's bar file, rotated into gzip'd parts;
* :mod:`~bt_ibkr.records.ownership`: which records belong to which journal
  (``JournalRecords``: two journals in one folder share its sessions folder, not its records);
* :mod:`~bt_ibkr.records.retention`: upkeep of one journal's records, deleting/archiving old
  ones;
* :mod:`~bt_ibkr.records.tearsheet`: the quantstats tearsheet from session records.

The live runner writes records; :mod:`bt_ibkr.parity` compares runs and replays records
through the backtest. Imports backtrader, pandas and the ground only.
"""
