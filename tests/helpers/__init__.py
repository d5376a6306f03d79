"""What the tests share: the gateway simulator's test helpers (``sim``), live-run helpers and the
small strategies that subprocess runs load by name (``live``), the headless browser (``browser``),
the loopback alert receiver (``receiver``) and the research gate strategies (``research_gate``).

``tests/`` is on ``sys.path`` (pyproject's ``pythonpath``), so tests import ``helpers.<module>``.
"""
