"""Futures: the roll registry, back-adjusted continuous series, IB continuous history and the
close-out guard. See docs/SETUP.md (Futures) for what is built, simulated and untried."""
