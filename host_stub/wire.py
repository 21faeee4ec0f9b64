"""Bytes <-> messages as the host needs them, on top of :mod:`specs.codec` (pure, no I/O).

What the shared codec does not do for a host:

* **Damaged answers.**  A fault may leave echo fields out of a response (C41, ``omit_fields``);
  the codec refuses to encode a message without its mandatory fields, so
  :func:`encode_response` encodes the fields as given.
* **One encoding per answer.**  The codec validates every character of what it encodes, which a
  terminal's request needs (remote input, checked by :func:`specs.codec.decode`) and the host's own
  answer does not: its fields are the request's, already validated, and values the core builds.
  :func:`encode_response` checks the MTI and the field numbers and encodes once; with
  a MAK it signs while encoding (:func:`specs.crypto.sign` would encode the message a second time
  to get the MAC block).
* **The MAC of what arrived.**  :func:`wire_mac_is_valid` checks a request's field 64 over the bytes
  the terminal sent, instead of re-encoding the decoded request.

>>> from specs.dialects import get_dialect
>>> d = get_dialect("intl-ascii")
>>> encode_response({"t": "0210", "3": "000000", "11": "000007", "39": "00"}, d)  # 41 left out by a fault
b'0210202000000200000000000000000700'
>>> wire, mac = encode_signed({"t": "0810", "11": "000007", "39": "00", "41": "10000001", "70": "001"}, d,
...                           bytes(range(16)), "x9.19")
>>> wire.endswith(mac.encode()) and wire_mac_is_valid(wire, d, bytes(range(16)), "x9.19")
True
"""

from __future__ import annotations

import hmac
from typing import Any

import iso8583

from specs.codec import CodecError, Message, _to_wire_value, encode
from specs.crypto import MAC_ALGORITHMS
from specs.dialects import Dialect

#: Plain-dict copies of dialect specs, by the identity of the spec they copy (held, so that the
#: identity stays unique): dialects built from profiles may share a name.
_SPECS: dict[int, tuple[Any, dict[str, Any]]] = {}
#: Per dialect spec (same keying): the fields whose values go on the wire as they are (no ``=``/``D`` or
#: case change).
_PLAIN: dict[int, tuple[Any, frozenset[str]]] = {}


def _spec(dialect: Dialect) -> dict[str, Any]:
    entry = _SPECS.get(id(dialect.spec))
    if entry is None:
        entry = _SPECS[id(dialect.spec)] = (dialect.spec, dict(dialect.spec))
    return entry[1]


def encode_response(message: Message, dialect: Dialect) -> bytes:
    """Encode a response; a response missing mandatory fields (a fault's doing) is encoded as given.

    Raises:
        CodecError: a field the dialect does not define, or a value it cannot carry (the codec's
        full check runs then, to say which and where).
    """
    return _encode(message, dialect, signing=False)


def encode_signed(message: Message, dialect: Dialect, mak: bytes, algorithm: str) -> tuple[bytes, str]:
    """Encode a response with field 64 set to its MAC, computed over the same encoding.

    Returns:
        The message bytes and the MAC as upper-case hex (field 64 as :func:`specs.crypto.sign` sets it).
    """
    wire = _encode(message, dialect, signing=True)
    size = int(_spec(dialect)["64"]["max_len"])
    block = wire[:-size]
    mac = MAC_ALGORITHMS[algorithm](mak, block)
    binary = _spec(dialect)["64"]["data_enc"] == "b"
    return block + (mac if binary else mac.hex().upper().encode("ascii")), mac.hex().upper()


def wire_mac_is_valid(wire: bytes, dialect: Dialect, mak: bytes, algorithm: str) -> bool:
    """Whether the last field of ``wire`` (field 64) is the MAC of the bytes before it (False, never
    an exception, on anything that does not fit)."""
    size = int(_spec(dialect)["64"]["max_len"])
    if len(wire) <= size:
        return False
    expected = MAC_ALGORITHMS[algorithm](mak, wire[:-size])
    given = wire[-size:]
    if _spec(dialect)["64"]["data_enc"] != "b":
        try:
            given = bytes.fromhex(given.decode("ascii"))
        except ValueError:
            return False
    return hmac.compare_digest(expected, given)


def _encode(message: Message, dialect: Dialect, *, signing: bool) -> bytes:
    if message.get("t") not in dialect.mandatory:
        return encode(message, dialect)  # an MTI the dialect does not know: the codec says so (raises)
    formats = dialect.formats
    cached = _PLAIN.get(id(dialect.spec))
    if cached is None:
        cached = _PLAIN[id(dialect.spec)] = (dialect.spec, frozenset(
            k for k, f in formats.items() if k != "64" and _to_wire_value("=a", f, dialect) == "=a"))
    plain = cached[1]
    doc: dict[str, str] = {}
    for key, value in message.items():
        if key in plain and value.__class__ is str:
            doc[key] = value
        elif key == "t":
            doc["t"] = value
        elif key not in ("p", "1", "h", "64"):
            fmt = formats.get(key)
            if fmt is None or not isinstance(value, str):
                return encode(message, dialect)  # the codec names the problem (raises)
            doc[key] = _to_wire_value(value, fmt, dialect)
    if signing:
        doc["64"] = "0" * 16
    elif "64" in message:
        doc["64"] = _to_wire_value(message["64"], formats["64"], dialect)
    try:
        raw, _ = iso8583.encode(doc, _spec(dialect))
    except (iso8583.EncodeError, ValueError, TypeError) as err:
        if not signing:
            return encode(message, dialect)  # the codec says what is wrong, field and position
        raise CodecError("Response cannot be encoded for signing", field="64", pos=None, mti=message.get("t")) from err
    return bytes(raw)
