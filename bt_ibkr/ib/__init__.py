"""Everything that speaks to Interactive Brokers.

Client selection (``client``), IB's numbers (``codes``, ``bars``), contracts, pacing, the one
connection (``connection``: the loop thread and the one client object, with ``loop`` and
``account``), the one history path (``historical``), live streams, order routes, typed events,
parsing, order refs, snapshots, the start-up queries of orders and executions
(``reconcile_queries``), and backtrader's triad faces: ``store`` (IBStore) and ``broker``
(IBBroker). Imports only the ground of ``bt_ibkr`` (errors, validation, cache, utc, progress),
never ``feeds`` (the IB feed registers itself with the store); importing this package imports
no IB client library.
"""
