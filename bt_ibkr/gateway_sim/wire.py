"""TWS socket framing and field encoding, as the real ib_async/ib_insync clients speak it.

Every message after the raw ``API\\0`` prefix is a 4-byte big-endian length followed by
NUL-terminated fields. Server->client field
encoding follows what the clients' decoders accept: bools as ``1``/``0``, ``None`` and the
UNSET sentinels as ``""``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

#: client -> server message names (for the request log)
MSG_NAMES: dict[int, str] = {
    1: "reqMktData", 2: "cancelMktData", 3: "placeOrder", 4: "cancelOrder",
    5: "reqOpenOrders", 6: "reqAccountUpdates", 7: "reqExecutions", 8: "reqIds",
    9: "reqContractDetails", 10: "reqMktDepth", 11: "cancelMktDepth",
    12: "reqNewsBulletins", 13: "cancelNewsBulletins", 14: "setServerLogLevel",
    15: "reqAutoOpenOrders", 16: "reqAllOpenOrders", 17: "reqManagedAccts",
    20: "reqHistoricalData", 25: "cancelHistoricalData", 49: "reqCurrentTime",
    50: "reqRealTimeBars", 51: "cancelRealTimeBars", 52: "reqFundamentalData",
    58: "reqGlobalCancel", 59: "reqMarketDataType", 61: "reqPositions",
    62: "reqAccountSummary", 63: "cancelAccountSummary", 64: "cancelPositions",
    71: "startApi", 74: "reqPositionsMulti", 75: "cancelPositionsMulti",
    76: "reqAccountUpdatesMulti", 77: "cancelAccountUpdatesMulti", 78: "reqSecDefOptParams",
    81: "reqMatchingSymbols", 87: "reqHeadTimeStamp", 90: "cancelHeadTimeStamp",
    91: "reqMarketRule", 92: "reqPnL", 93: "cancelPnL", 94: "reqPnLSingle",
    95: "cancelPnLSingle", 96: "reqHistoricalTicks", 97: "reqTickByTickData",
    98: "cancelTickByTickData", 99: "reqCompletedOrders", 104: "reqUserInfo",
}

UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308
#: What commissionReport sends for an unset realizedPNL/yield (the clients map it to 0/unset).
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"


def fmt(value: object) -> str:
    """Return one field as the decoders expect it.

    bool -> "1"/"0"; None and UNSET sentinels -> ""; inf -> "Infinite"; floats that are whole
    numbers keep their ".0" (``str(float)``); everything else ``str()``.
    """
    kind = type(value)
    if kind is str:  # the common cases first: this runs for every field the gateway sends
        return value  # type: ignore[return-value]
    if kind is int:
        return "" if value == UNSET_INTEGER else str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return "" if value == UNSET_INTEGER else str(value)
    if isinstance(value, float):
        if value == UNSET_DOUBLE:
            return ""
        if math.isinf(value):
            return "Infinite"
        if math.isnan(value):
            return ""
        return str(value)
    return str(value)


def frame(fields: Iterable[object]) -> bytes:
    """Return the framed message: 4-byte big-endian length + each field NUL-terminated."""
    parts = list(map(fmt, fields))
    text = "\0".join(parts) + "\0" if parts else ""
    payload = text.encode("utf-8", errors="backslashreplace")
    return struct.pack(">I", len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """Split one message payload into its fields (the trailing empty element dropped)."""
    fields = payload.decode("utf-8", errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


class FieldReader:
    """Sequential reader over a client request's fields, mirroring how client.py wrote them.

    Each ``read_*`` call consumes one field. Reading past the end raises ``IndexError``
    naming the message, so a malformed request becomes one clear log line in the server.
    """

    def __init__(self, fields: list[str], name: str = "message") -> None:
        self.fields = fields
        self.pos = 0
        self.name = name

    def remaining(self) -> int:
        """Return how many fields are left."""
        return len(self.fields) - self.pos

    def str(self) -> str:
        """Return the next field as text."""
        if self.pos >= len(self.fields):
            raise IndexError(f"{self.name}: expected more than {len(self.fields)} fields")
        value = self.fields[self.pos]
        self.pos += 1
        return value

    def int(self, default: int = 0) -> int:
        """Return the next field as int ("" -> default)."""
        text = self.str()
        if text == "":
            return default
        return int(float(text)) if "." in text else int(text)

    def float(self, default: float = 0.0) -> float:
        """Return the next field as float ("" -> default; "Infinite" -> inf)."""
        text = self.str()
        if text == "":
            return default
        if text == "Infinite":
            return math.inf
        return float(text)

    def bool(self) -> bool:
        """Return the next field as bool ("1"/"0"/""/"True"/"False")."""
        text = self.str()
        return text not in ("", "0", "False", "false")

    def skip(self, n: int = 1) -> None:
        """Consume ``n`` fields without reading them."""
        self.pos += n
