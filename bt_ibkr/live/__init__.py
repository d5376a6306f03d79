"""Paper and live trading: ``config``, ``safety`` rails, ``risk`` gate, ``audit`` log, order
``journal``, ``journaled_broker`` and the ``runner`` (``run_live``). Imports ``bt_ibkr.ib``,
``feeds``, ``analyzers`` and the ground; the runner starts ``gateway_sim`` for ``--simulate``."""
