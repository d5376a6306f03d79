"""The parts of ``python -m bench.evaluate_strategy``: the variants and settings it runs
(``variants``), the series it runs them on (``series``), the statistics of a row (``stats``)
and the Markdown tables of docs/RESULTS.md (``tables``)."""
