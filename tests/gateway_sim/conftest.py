"""Fixtures of the gateway simulator's client tests."""

from __future__ import annotations

import pytest
from helpers.sim import DECODER_LOGGERS, ErrorCatcher


@pytest.fixture
def decoder_errors():
    """ERROR records of the clients' decoders and of the simulator itself during the test;
    the test fails if there are any."""
    catcher = ErrorCatcher((*DECODER_LOGGERS, "bt_ibkr.gateway_sim")).install()
    yield catcher.records
    catcher.remove()
    assert not catcher.records, catcher.messages()
