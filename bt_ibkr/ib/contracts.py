"""backtrader's IB ``dataname`` grammar <-> IB ``Contract``.

The grammar is the one of backtrader's ``IBData.parsecontract`` / ``IBStore.makecontract``::

    TICKER                                              STK on the default exchange (SMART)
    TICKER-STK[-EXCHANGE[-CURRENCY]]                    stock
    TICKER-CFD[-EXCHANGE[-CURRENCY]]                    CFD
    TICKER-IND-EXCHANGE[-CURRENCY]                      index
    CUR1.CUR2-CASH-IDEALPRO                             forex (currency taken from the pair)
    TICKER-YYYYMM-EXCHANGE[-CURRENCY[-MULT]]            future
    TICKER-FUT-EXCHANGE-CURRENCY-YYYYMM[-MULT]          future
    TICKER-YYYYMM-EXCHANGE-CURRENCY-STRIKE-RIGHT[-MULT] future option (FOP)
    TICKER-FOP-EXCHANGE-CURRENCY-YYYYMM-STRIKE-RIGHT[-MULT]
    TICKER-YYYYMMDD-EXCHANGE-CURRENCY-STRIKE-RIGHT[-MULT]   option
    TICKER-OPT-EXCHANGE-CURRENCY-YYYYMMDD-STRIKE-RIGHT[-MULT]

Missing fields take the feed's defaults (``sectype``, ``exchange``, ``currency`` params).
:func:`parse_dataname` returns a :class:`ContractSpec`; ``spec.to_contract()`` the unqualified
IB ``Contract``; :func:`select_single` turns the contract-details answer of IB into exactly one
match or a clear error naming the user's input.
"""

from __future__ import annotations

from dataclasses import dataclass

from bt_ibkr.errors import ConfigError, UnknownSymbolError

SECTYPES = ("STK", "CFD", "IND", "CASH", "FUT", "FOP", "OPT", "CONTFUT", "CMDTY", "BOND", "CRYPTO")

_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}


class AmbiguousContractError(UnknownSymbolError):
    """IB answered a contract lookup with more than one match; the message lists them."""


@dataclass(frozen=True)
class ContractSpec:
    """A parsed ``dataname``: the fields of an (unqualified) IB contract.

    ``expiry`` is ``YYYYMM`` or ``YYYYMMDD`` ('' when not a derivative), ``right`` is 'C'/'P'
    or '', ``multiplier`` a string ('' when not given).
    """

    symbol: str
    sectype: str = "STK"
    exchange: str = "SMART"
    currency: str = ""
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    dataname: str = ""

    def to_contract(self):
        """Return an unqualified ``Contract`` of the selected IB client library."""
        from bt_ibkr.ib.client import Contract

        kwargs = dict(
            symbol=self.symbol,
            secType=self.sectype,
            exchange=self.exchange,
            currency=self.currency,
        )
        if self.sectype in ("FUT", "OPT", "FOP"):
            kwargs["lastTradeDateOrContractMonth"] = self.expiry
        if self.sectype in ("OPT", "FOP"):
            kwargs["strike"] = float(self.strike)
            kwargs["right"] = self.right
        if self.multiplier:
            kwargs["multiplier"] = str(self.multiplier)
        return Contract(**kwargs)


def _parse_strike(token: str, dataname: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise ConfigError(
            f"dataname {dataname!r}: strike {token!r} is not a number; "
            "write options as TICKER-YYYYMMDD-EXCHANGE-CURRENCY-STRIKE-RIGHT"
        ) from None


def _parse_right(token: str, dataname: str) -> str:
    right = _RIGHTS.get(token.upper())
    if right is None:
        raise ConfigError(
            f"dataname {dataname!r}: option right {token!r} must be C, CALL, P or PUT"
        )
    return right


def parse_dataname(
    dataname: str,
    sectype: str = "STK",
    exchange: str = "SMART",
    currency: str = "",
) -> ContractSpec:
    """Parse a backtrader IB ``dataname`` into a :class:`ContractSpec`.

    ``sectype``/``exchange``/``currency`` are the defaults for fields the name leaves out
    (backtrader's IBData params of the same names). Raises :class:`ConfigError` for an empty
    name, an unknown security type, a malformed forex pair, strike or right.
    """
    if not isinstance(dataname, str) or not dataname.strip():
        raise ConfigError(
            f"dataname {dataname!r} is empty; give a contract such as 'AAPL-STK-SMART-USD'"
        )
    name = dataname.strip()
    tokens = name.split("-")
    if any(not t for t in tokens):
        raise ConfigError(f"dataname {dataname!r} has an empty field between '-' separators")
    it = iter(tokens)
    symbol = next(it)
    exch, curr = exchange, currency
    expiry, strike, right, mult = "", 0.0, "", ""
    sec = next(it, sectype).upper()
    if sec.isdigit():
        if len(sec) not in (6, 8):
            raise ConfigError(
                f"dataname {dataname!r}: expiry {sec!r} must be YYYYMM (future) or "
                "YYYYMMDD (option)"
            )
        expiry = sec
        sec = "FUT" if len(sec) == 6 else "OPT"
    if sec not in SECTYPES:
        raise ConfigError(
            f"dataname {dataname!r}: security type {sec!r} is not one of {', '.join(SECTYPES)}"
        )
    if sec == "CASH":
        if "." not in symbol:
            raise ConfigError(
                f"dataname {dataname!r}: forex must be written CUR1.CUR2-CASH-IDEALPRO"
            )
        symbol, curr = symbol.split(".", 1)
    rest = list(it)
    if rest:
        exch = rest.pop(0)
    if rest:
        curr = rest.pop(0)
    if sec == "FUT":
        if not expiry and rest:
            expiry = rest.pop(0)
        if len(rest) >= 2:  # STRIKE-RIGHT[-MULT]: a future option
            sec = "FOP"
            strike = _parse_strike(rest.pop(0), dataname)
            right = _parse_right(rest.pop(0), dataname)
        if rest:
            mult = rest.pop(0)
    elif sec in ("OPT", "FOP"):
        if not expiry and rest:
            expiry = rest.pop(0)
        if rest:
            strike = _parse_strike(rest.pop(0), dataname)
        if rest:
            right = _parse_right(rest.pop(0), dataname)
        if rest:
            mult = rest.pop(0)
    if rest:
        raise ConfigError(f"dataname {dataname!r}: unexpected trailing fields {rest!r}")
    if sec in ("FUT", "FOP", "OPT") and not expiry:
        raise ConfigError(f"dataname {dataname!r}: a {sec} contract needs an expiry")
    return ContractSpec(
        symbol=symbol,
        sectype=sec,
        exchange=exch,
        currency=curr,
        expiry=expiry,
        strike=strike,
        right=right,
        multiplier=mult,
        dataname=name,
    )


def make_contract(dataname: str, sectype: str = "STK", exchange: str = "SMART", currency: str = ""):
    """Return the unqualified IB ``Contract`` for ``dataname`` (see :func:`parse_dataname`)."""
    return parse_dataname(dataname, sectype, exchange, currency).to_contract()


def contract_to_dataname(contract) -> str:
    """Return the canonical backtrader ``dataname`` of an IB ``Contract`` (inverse of parsing).

    Round-trips: ``parse_dataname(contract_to_dataname(c)).to_contract()`` has the same
    symbol, secType, exchange, currency, expiry, strike, right and multiplier as ``c``.
    """
    sec = contract.secType
    exch = contract.exchange or "SMART"
    if sec == "CASH":
        return f"{contract.symbol}.{contract.currency}-CASH-{exch}"
    parts = [contract.symbol, sec, exch]
    if contract.currency:
        parts.append(contract.currency)
    if sec in ("FUT", "OPT", "FOP"):
        if not contract.currency:
            raise ConfigError(f"contract {contract!r} needs a currency to be written as a dataname")
        parts.append(contract.lastTradeDateOrContractMonth)
        if sec in ("OPT", "FOP"):
            strike = float(contract.strike)
            parts.append(f"{strike:g}")
            parts.append(contract.right)
        if contract.multiplier:
            parts.append(str(contract.multiplier))
    return "-".join(parts)


def select_single(dataname: str, details: list) -> object:
    """Return the one ``ContractDetails`` in ``details`` (IB's answer for ``dataname``).

    Raises :class:`UnknownSymbolError` when IB found nothing and
    :class:`AmbiguousContractError` (listing the candidates) when it found several.
    """
    if not details:
        raise UnknownSymbolError(
            f"IB has no contract for dataname {dataname!r}; check symbol, security type, "
            "exchange and currency (e.g. 'AAPL-STK-SMART-USD')"
        )
    if len(details) > 1:
        names = ", ".join(
            f"{contract_to_dataname(d.contract)} (conId {d.contract.conId})" for d in details[:10]
        )
        raise AmbiguousContractError(
            f"dataname {dataname!r} matches {len(details)} IB contracts: {names}; add the "
            "exchange, currency or expiry to pick one"
        )
    return details[0]
