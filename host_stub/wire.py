"""Bytes <-> messages as the host needs them, on top of :mod:`specs.codec` (pure, no I/O).

Two things the shared codec does not do for a host:

* **Repeat MTIs.**  Advice and reversal repeats arrive as 0221 and 0401 (domain.md §1.4, §F6,
  §F7); the dialect tables list only 0220 and 0400.  :func:`decode_request` decodes a repeat with
  the rules of its first-transmission MTI and gives it back with its own MTI.
* **Damaged answers.**  A fault may leave echo fields out of a response (C41, ``omit_fields``);
  the codec refuses to encode a message without its mandatory fields, so
  :func:`encode_response` falls back to encoding the fields as given.

>>> from specs.dialects import get_dialect
>>> d = get_dialect("intl-ascii")
>>> wire = encode_response({"t": "0220", "3": "000000", "4": "000000000100", "11": "000007",
...                         "41": "10000001", "42": "123456789012345"}, d)
>>> decode_request(b"0221" + wire[4:], d)["t"]
'0221'
>>> encode_response({"t": "0210", "3": "000000", "11": "000007", "39": "00"}, d)  # 41 left out by a fault
b'0210202000000200000000000000000700'
"""

from __future__ import annotations

import iso8583

from specs.codec import CodecError, Message, decode, encode
from specs.dialects import Dialect

#: Repeat MTI -> the MTI whose field rules it follows.
REPEAT_OF = {"0221": "0220", "0401": "0400", "0121": "0120"}


def decode_request(data: bytes, dialect: Dialect) -> Message:
    """Decode and validate one request, accepting repeat MTIs (0221, 0401, 0121).

    Raises:
        CodecError: as :func:`specs.codec.decode`.
    """
    try:
        return decode(data, dialect)
    except CodecError as exc:
        first = REPEAT_OF.get(exc.mti or "")
        if exc.field != "t" or first is None:
            raise
        size = 2 if dialect.bcd else 4
        patched = (bytes.fromhex(first) if dialect.bcd else first.encode("ascii")) + data[size:]
        message = decode(patched, dialect)
        message["t"] = exc.mti or first
        return message


def encode_response(message: Message, dialect: Dialect) -> bytes:
    """Encode a response; a response missing mandatory fields (a fault's doing) is encoded as given.

    Raises:
        CodecError: a field value the dialect cannot carry (never a missing field).
    """
    try:
        return encode(message, dialect)
    except CodecError as exc:
        if not exc.msg.startswith("Mandatory field"):
            raise
    doc = {k: (v.upper() if dialect.formats[k].kind == "b" else v) if k != "t" else v for k, v in message.items()}
    raw, _ = iso8583.encode(doc, dict(dialect.spec))
    return bytes(raw)
