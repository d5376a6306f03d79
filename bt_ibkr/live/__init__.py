"""Paper and live trading: config, safety rails, risk gate, audit, journal, runner."""
