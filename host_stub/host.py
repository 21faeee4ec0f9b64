"""The stub acquirer's decisions: a decoded request and the books in, a response out.

No sockets, no asyncio, no wall clock: the server passes ``now`` (the business clock) and does the
I/O.  The ledger is the host's state; every request is recorded there before its answer exists,
so an answer never leaves for a request the books do not know.

Request kinds (domain.md §2, §4):

=========================  ===========================  ==========================
kind                       INTL                         CUP
=========================  ===========================  ==========================
sign-on / sign-off / echo  0800 70=001 / 002 / 301      0800 60.3=001|003|004, 0820 60.3=002 / 301
sale                       0200 3=00xxxx                0200 3=00xxxx 60.1=22
settlement                 0500 3=920000 | 960000       0500 60.3=201
=========================  ===========================  ==========================
"""

from __future__ import annotations

from datetime import datetime

from specs import codes
from specs.codec import Message
from specs.dialects import Dialect, response_mti
from specs.masking import mask_pan
from specs.transactions import identify
from specs.totals import CUP_BALANCED, CUP_UNBALANCED, cup_field_48, parse_cup_field_48, parse_intl_field_63

from host_stub.ledger import Authorization, Ledger

#: Request fields a response echoes (the rest are the host's own or must not come back: 2, 35, 52, 55).
_SUPPORTED = frozenset({"sign_on", "sign_off", "echo", "sale"})

_ECHO = ("3", "4", "11", "24", "25", "41", "42", "49", "60", "70")


def classify(request: Message, dialect: Dialect) -> str:
    """Name the business meaning of a request: ``sign_on``, ``echo``, ``settlement``, a transaction
    kind of :mod:`specs.transactions` (``sale``, ``refund``, ...), or ``unsupported``."""
    mti = request["t"]
    if mti in ("0800", "0820"):
        if dialect.family == "cup":
            nmic = request.get("60", "")[8:11]
            if mti == "0800":
                return "sign_on" if nmic in ("001", "003", "004") else "unsupported"
            return {"002": "sign_off", "301": "echo"}.get(nmic, "unsupported")
        return {"001": "sign_on", "002": "sign_off", "301": "echo"}.get(request.get("70", ""), "unsupported")
    if mti == "0500":
        return "settlement" if dialect.family == "cup" or request.get("3") in ("920000", "960000") else "unsupported"
    return identify(request, dialect.family) or "unsupported"


class Host:
    """Stub acquirer core: approves sign-on, echo and sales; compares settlement totals."""

    def __init__(self, ledger: Ledger, dialect: Dialect) -> None:
        self.ledger = ledger
        self.dialect = dialect

    def handle(self, request: Message, *, now: datetime) -> Message:
        """Decide the answer to one decoded, validated request and record it in the ledger.

        Args:
            request: decoded request message (``"t"`` plus data elements).
            now: the business clock's current local time.

        Returns:
            The response message, ready to encode.
        """
        kind = classify(request, self.dialect)
        response = self._base_response(request, now)
        if kind == "settlement":
            return self._settle(request, response, now)
        rc = codes.APPROVED if kind in _SUPPORTED else codes.INVALID_TRANSACTION
        if kind == "sale" and rc == codes.APPROVED:
            seq = self.ledger.next_sequence("rrn")
            rrn = f"{now:%y%j}{seq % 10_000_000:07d}"
            auth_code = f"{(seq * 7919) % 1_000_000:06d}"
            response.update({"15": f"{now:%m%d}", "37": rrn, "38": auth_code})
        response["39"] = rc
        self._record(request, kind, response, now)
        return response

    def _record(self, request: Message, kind: str, response: Message, now: datetime) -> None:
        rc = response["39"]
        self.ledger.record(Authorization(
            received_at=now.isoformat(timespec="seconds"), mti=request["t"], kind=kind,
            tid=request["41"], mid=request.get("42", ""), stan=request["11"],
            processing_code=request.get("3"), amount_minor=int(request["4"]) if "4" in request else None,
            pan_masked=mask_pan(request["2"]) if "2" in request else None, rrn=response.get("37"),
            auth_code=response.get("38"), rc=rc, status="approved" if rc == codes.APPROVED else "declined",
            batch=self._cup_batch(request), settlement_date=response.get("15")))

    def _base_response(self, request: Message, now: datetime) -> Message:
        response: Message = {"t": response_mti(request["t"])}
        response.update({k: request[k] for k in _ECHO if k in request})
        response["12"], response["13"] = f"{now:%H%M%S}", f"{now:%m%d}"
        return response

    def _cup_batch(self, request: Message) -> str | None:
        return request["60"][2:8] if self.dialect.family == "cup" and len(request.get("60", "")) >= 8 else None

    def _settle(self, request: Message, response: Message, now: datetime) -> Message:
        tid, mid = request["41"], request.get("42", "")
        batch = request["60"][2:8] if self.dialect.family == "cup" else request["60"][:6]
        try:
            terminal = (parse_cup_field_48(request["48"])[0] if self.dialect.family == "cup"
                        else parse_intl_field_63(request["63"]))
        except ValueError:  # totals that are not digits: answer 30 and keep the request on the books
            response["39"] = codes.FORMAT_ERROR
            self._record(request, "settlement", response, now)
            return response
        host = self.ledger.open_batch_totals(tid)
        balanced = terminal == host
        if self.dialect.family == "cup":
            # 39 stays 00; the 对账应答码 in field 48 carries the result, with the host's totals.
            rc = codes.APPROVED
            response["48"] = cup_field_48(host, flag=CUP_BALANCED if balanced else CUP_UNBALANCED)
        else:
            rc = codes.APPROVED if balanced else codes.RECONCILE_ERROR
        response["39"] = rc
        self.ledger.record_settlement(
            at=now.isoformat(timespec="seconds"), tid=tid, mid=mid, batch=batch,
            processing_code=request.get("3"), terminal=terminal, host=host,
            result="balanced" if balanced else "unbalanced", rc=rc, close_batch=balanced)
        self._record(request, "settlement", response, now)
        return response

