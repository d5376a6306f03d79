"""IB's numbers in one place: error codes, API ports and order-status sets.

Error codes are grouped by what bt_ibkr does with them (named sets, not literals scattered
through callers); the comment on each says what IB means by it. Order statuses follow
ib_async's ``OrderStatus`` names.
"""

from __future__ import annotations

# ------------------------------------------------------------------ error codes
#: historical data: "HMDS query returned no data" or "pacing violation" (the text tells)
HISTORICAL_DATA_ERROR = 162
#: no security definition found for the request
NO_SECURITY_DEFINITION = 200
#: the order was cancelled (a confirmation, not a rejection)
ORDER_CANCELLED = 202
#: duplicate order id (a reused id: must never happen)
DUPLICATE_ORDER_ID = 103
#: the client id is already connected: retrying with the same id cannot help
CLIENT_ID_IN_USE = 326

#: gateway <-> IB connectivity: lost / restored with data lost / restored
CONNECTIVITY_LOST = 1100
CONNECTIVITY_RESTORED_DATA_LOST = 1101
CONNECTIVITY_RESTORED = 1102
#: all connectivity notices (1100/1101/1102, 2110 gateway <-> server broken); broadcast
CONNECTIVITY = frozenset({CONNECTIVITY_LOST, CONNECTIVITY_RESTORED_DATA_LOST,
                          CONNECTIVITY_RESTORED, 2110})

#: "market data not subscribed": 354 not subscribed, 420 invalid real-time query (no
#: permissions for real-time bars), 10089 subscription needed for API data, 10168 not
#: subscribed and delayed data not enabled, 10197 no data during a competing live session
NOT_SUBSCRIBED = frozenset({354, 420, 10089, 10168, 10197})
#: not subscribed, but IB would send delayed data (reqMarketDataType 3) instead
DELAYED_AVAILABLE = frozenset({354, 10089})
#: "displaying delayed market data": a warning, the data keeps coming
DELAYED_DATA = frozenset({10167})
#: errors that end a data request (162 historical, 200 no security, 203 not allowed,
#: 320-322 request errors, and every "not subscribed")
FEED_STOP = frozenset({HISTORICAL_DATA_ERROR, NO_SECURITY_DEFINITION, 203, 320, 321, 322}) \
    | NOT_SUBSCRIBED
#: cancel confirmations: 202 cancelled, 10148 cancel of an order that is already cancelling
CANCEL_CONFIRMATIONS = frozenset({ORDER_CANCELLED, 10148})
#: order warnings that change nothing (399 order message, 404 shares locate, 2109 outside RTH
#: attribute ignored, 10167 delayed data); every 21xx code is an informational notice too
ORDER_WARNINGS = frozenset({399, 404, 2109, 10167})


def is_warning(code: int | None) -> bool:
    """Return True when ``code`` is informational for an order (never a rejection)."""
    return code is not None and (code in ORDER_WARNINGS or 2100 <= code < 2200)


def is_pacing_violation(code: int, text: str) -> bool:
    """Return True for a historical-data pacing violation (162 whose text says so)."""
    return code == HISTORICAL_DATA_ERROR and "pacing" in text.lower()


def is_no_data(code: int, text: str) -> bool:
    """Return True for "HMDS query returned no data" (162): a stretch without sessions."""
    lowered = text.lower()
    return code == HISTORICAL_DATA_ERROR and ("no data" in lowered or "returned no" in lowered)


# ------------------------------------------------------------------ API ports
#: IB's default API ports (a user may change them; the account id is the proof of its kind)
PORT_NAMES: dict[int, str] = {7497: "TWS paper", 7496: "TWS live", 4002: "IB Gateway paper",
                              4001: "IB Gateway live"}
PAPER_PORTS: frozenset[int] = frozenset({7497, 4002})
LIVE_PORTS: frozenset[int] = frozenset({7496, 4001})
PORT_HINT = "TWS 7497 (paper) / 7496 (live), IB Gateway 4002 (paper) / 4001 (live)"

# ------------------------------------------------------------------ order statuses
#: the gateway holds the order and works it
WORKING_STATUSES = frozenset({"PreSubmitted", "Submitted"})
#: cancelled by the user, the API or IB
CANCELLED_STATUSES = frozenset({"Cancelled", "ApiCancelled"})
#: rejected or held by the gateway
INACTIVE = "Inactive"

SIMULATOR_BRAND = "bt_ibkr-gateway_sim"
"""What bt_ibkr's gateway simulator answers to reqUserInfo (its white-branding id): a connection
tells the simulator from a real gateway by it, so simulated prices are never filed as IB's."""
