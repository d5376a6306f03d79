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

UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE = 1.7976931348623157e308
#: What commissionReport sends for an unset realizedPNL/yield (the clients map it to 0/unset).
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"


def fmt(value: object) -> str:
    """Return one field as the decoders expect it.

    bool -> "1"/"0"; None and UNSET sentinels -> ""; inf -> "Infinite"; floats that are whole
    numbers keep their ".0" (``str(float)``); everything else ``str()``.
    """
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
    payload = "".join(fmt(f) + "\0" for f in fields).encode("utf-8", errors="backslashreplace")
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
