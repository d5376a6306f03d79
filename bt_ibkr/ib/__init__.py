"""Everything that speaks to Interactive Brokers.

Importing this package imports no IB client library; each module says what it needs.
"""
