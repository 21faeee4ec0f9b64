"""Bytes <-> messages as the host needs them, on top of :mod:`specs.codec` (pure, no I/O).

One thing the shared codec does not do for a host:

* **Damaged answers.**  A fault may leave echo fields out of a response (C41, ``omit_fields``);
  the codec refuses to encode a message without its mandatory fields, so
  :func:`encode_response` falls back to encoding the fields as given.

>>> from specs.dialects import get_dialect
>>> d = get_dialect("intl-ascii")
>>> wire = encode_response({"t": "0220", "3": "000000", "4": "000000000100", "11": "000007",
...                         "41": "10000001", "42": "123456789012345"}, d)
>>> encode_response({"t": "0210", "3": "000000", "11": "000007", "39": "00"}, d)  # 41 left out by a fault
b'0210202000000200000000000000000700'
"""

from __future__ import annotations

import iso8583

from specs.codec import CodecError, Message, encode
from specs.dialects import Dialect

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
