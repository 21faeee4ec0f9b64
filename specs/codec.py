"""Encode, decode and validate ISO 8583 messages for one dialect.

pyiso8583 turns bytes into a dict and back; this module adds what it leaves to the caller: the
MTI must be one the dialect knows, mandatory fields must be present, numeric fields must hold
digits only, and every error names what was found, what was expected, the field, the byte position
inside the ISO message (after any length prefix, TPDU or CUP header) and the MTI.

>>> from specs.dialects import get_dialect
>>> d = get_dialect("intl-ascii")
>>> wire = encode({"t": "0800", "11": "000001", "41": "10000001", "70": "001"}, d)
>>> wire
b'08008020000000800000040000000000000000000110000001001'
>>> decode(wire, d)
{'t': '0800', '11': '000001', '41': '10000001', '70': '001'}
>>> decode(wire.replace(b"000001", b"0000A1"), d)
Traceback (most recent call last):
...
specs.codec.CodecError: Field 11 holds '0000A1', expecting digits only (n 6): field 11 pos 36 mti 0800
"""

from __future__ import annotations

import string
from collections.abc import Mapping

import iso8583
from iso8583.decoder import DecodeError
from iso8583.encoder import EncodeError

from specs.dialects import Dialect, FieldFormat
from specs.masking import SENSITIVE_FIELDS

Message = dict[str, str]

_AN = frozenset(string.ascii_letters + string.digits + " ")
_ANS = frozenset(chr(c) for c in range(0x20, 0x7F))
_HEX = frozenset(string.hexdigits)
_Z = frozenset(string.digits + "=")
#: Field kind -> (characters allowed, how the error names them).
_ALLOWED: dict[str, tuple[frozenset[str], str]] = {
    "n": (frozenset(string.digits), "digits only"),
    "z": (_Z, "digits and '=' only"),
    "an": (_AN, "letters, digits and spaces only"),
    "ans": (_ANS, "printable ASCII only"),
    "b": (_HEX, "hex digits only"),
}


class CodecError(ValueError):
    """A message could not be encoded or decoded.

    The text reads ``"<what was found, what was expected>: field F pos P mti M"``; the same facts
    are attributes so that callers (the host's format-error answer, traces) need not parse it.

    Attributes:
        msg: the description without location.
        field: ``"t"`` (MTI), ``"p"`` (bitmap) or the data element number.
        pos: byte offset inside the ISO message, or None when not known.
        mti: the MTI if it could be read, else None.
    """

    def __init__(self, msg: str, *, field: str, pos: int | None, mti: str | None) -> None:
        where = f"field {field} pos {pos if pos is not None else '?'} mti {mti or '?'}"
        super().__init__(f"{msg}: {where}")
        self.msg = msg
        self.field = field
        self.pos = pos
        self.mti = mti

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keep the keyword-only ctor picklable
        return _rebuild_codec_error, (self.msg, self.field, self.pos, self.mti)


def _rebuild_codec_error(msg: str, field: str, pos: int | None, mti: str | None) -> CodecError:
    return CodecError(msg, field=field, pos=pos, mti=mti)


def _field_order(key: str) -> int:
    return {"h": -3, "t": -2, "p": -1}.get(key) or int(key)


def encode(message: Mapping[str, str], dialect: Dialect) -> bytes:
    """Validate and encode one message.

    Args:
        message: ``{"t": MTI, "<n>": value}``; bitmaps are computed, never given.
        dialect: the encoding dialect.

    Returns:
        The ISO message bytes (no length prefix, TPDU or header: see :mod:`specs.framing`).

    Raises:
        CodecError: unknown MTI, missing mandatory field, a value of the wrong kind or length.
    """
    fields = {k: v for k, v in message.items() if k not in ("p", "1", "h")}
    mti = fields.get("t")
    _check_mti(mti, dialect, pos=0)
    assert mti is not None
    for number in sorted((k for k in fields if k != "t"), key=int):
        fmt = dialect.formats.get(number)
        if fmt is None:
            raise CodecError(f"Field {number} is not defined in dialect {dialect.name}",
                             field=number, pos=_encoded_offset(fields, number, dialect), mti=mti)
        problem = _value_problem(number, fields[number], fmt)
        if problem:
            raise CodecError(problem, field=number, pos=_encoded_offset(fields, number, dialect), mti=mti)
    _check_mandatory(fields, dialect, mti, pos=None)
    doc = {k: (_to_wire_value(v, dialect.formats[k], dialect) if k != "t" else v) for k, v in fields.items()}
    try:
        raw, _ = iso8583.encode(doc, dict(dialect.spec))
    except EncodeError as exc:  # lengths pyiso8583 checks against the spec
        raise CodecError(exc.msg, field=exc.field, pos=_encoded_offset(fields, exc.field, dialect), mti=mti) from None
    return bytes(raw)


def decode(data: bytes, dialect: Dialect) -> Message:
    """Decode and validate one ISO message (no length prefix, TPDU or header).

    Returns:
        ``{"t": MTI, "<n>": value}`` in field order, without bitmaps.

    Raises:
        CodecError: truncated or malformed data, unknown MTI, missing mandatory field, a value of
        the wrong kind.
    """
    try:
        doc_dec, doc_enc = iso8583.decode(data, dialect.spec)
    except DecodeError as exc:
        raise _decode_failure(exc, dialect) from None
    except KeyError as exc:  # a bitmap bit for a field the dialect does not define
        field = str(exc.args[0])
        raise CodecError(f"Field {field} is present in the bitmap but not defined in dialect {dialect.name}",
                         field=field, pos=None, mti=_peek_mti(data, dialect)) from None
    mti = doc_dec["t"]
    _check_mti(mti, dialect, pos=0)
    message: Message = {"t": mti}
    for number in sorted((k for k in doc_dec if k not in ("t", "p", "1", "h")), key=int):
        fmt = dialect.formats[number]
        value = _from_wire_value(doc_dec[number], fmt, dialect)
        problem = _value_problem(number, value, fmt)
        if problem:
            raise CodecError(problem, field=number, pos=_field_positions(doc_enc)[number], mti=mti)
        message[number] = value
    _check_mandatory(message, dialect, mti, pos=len(data))
    return message


def _field_positions(doc_enc: Mapping[str, Mapping[str, bytes]]) -> dict[str, int]:
    """Byte offset of each decoded part (only on the error path: a valid message never needs them)."""
    positions: dict[str, int] = {}
    offset = 0
    for key in sorted(doc_enc, key=_field_order):
        positions[key] = offset
        offset += len(doc_enc[key]["len"]) + len(doc_enc[key]["data"])
    return positions


def _decode_failure(exc: DecodeError, dialect: Dialect) -> CodecError:
    """The error for a message pyiso8583 could not decode, naming the field that really failed.

    A field sent in another layout than the dialect's (a BCD field 39 where ASCII is expected)
    shifts every field after it, and pyiso8583 stops only where the shifted bytes run out, often
    many fields later.  The first field already decoded whose content does not fit its format is
    where the layouts parted; it is named, with where decoding stopped.
    """
    doc_dec, doc_enc = exc.doc_dec or {}, exc.doc_enc or {}
    mti = doc_dec.get("t")
    offset = 0
    for key in sorted(doc_enc, key=_field_order):
        start = offset
        offset += len(doc_enc[key].get("len", b"")) + len(doc_enc[key].get("data", b""))
        if key in ("h", "t", "p", "1") or key not in doc_dec or key == exc.field or key not in dialect.formats:
            continue
        fmt = dialect.formats[key]
        problem = _value_problem(key, _from_wire_value(doc_dec[key], fmt, dialect), fmt)
        if problem:
            return CodecError(f"{problem}; the bytes after it do not decode either (stopped at field {exc.field}: "
                              f"{exc.msg})", field=key, pos=start, mti=mti)
    return CodecError(exc.msg, field=exc.field, pos=exc.pos, mti=mti)


def decode_unvalidated(data: bytes, dialect: Dialect) -> Message:
    """Decode field layout only: no MTI, content or mandatory-field checks.

    For a host that must find out whom to answer with ``30`` (format error) when :func:`decode`
    rejected the message.

    Raises:
        CodecError: the layout itself cannot be decoded.
    """
    try:
        doc, _ = iso8583.decode(data, dialect.spec)
    except DecodeError as exc:
        raise CodecError(exc.msg, field=exc.field, pos=exc.pos, mti=None) from None
    except KeyError as exc:
        raise CodecError(f"Field {exc.args[0]} is present in the bitmap but not defined in dialect {dialect.name}",
                         field=str(exc.args[0]), pos=None, mti=_peek_mti(data, dialect)) from None
    return {k: _from_wire_value(v, dialect.formats[k], dialect) if k in dialect.formats else v
            for k, v in doc.items() if k not in ("p", "1", "h")}


def _peek_mti(data: bytes, dialect: Dialect) -> str | None:
    head = data[:2].hex() if dialect.bcd else data[:4].decode("ascii", "replace")
    return head if len(head) == 4 else None


def _check_mti(mti: str | None, dialect: Dialect, *, pos: int) -> None:
    if mti is None:
        raise CodecError("MTI is missing, expecting field 't'", field="t", pos=pos, mti=None)
    if mti not in dialect.mandatory:
        raise CodecError(f"Unknown MTI {mti!r}, expecting one of {', '.join(dialect.known_mtis)}",
                         field="t", pos=pos, mti=mti)


def _check_mandatory(fields: Mapping[str, str], dialect: Dialect, mti: str, *, pos: int | None) -> None:
    missing = sorted(dialect.mandatory[mti] - fields.keys(), key=int)
    if missing:
        raise CodecError(
            f"Mandatory field {missing[0]} is missing from {mti}"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f", expecting fields {', '.join(sorted(dialect.mandatory[mti], key=int))}",
            field=missing[0], pos=pos, mti=mti)


def _value_problem(number: str, value: object, fmt: FieldFormat) -> str | None:
    """Describe what is wrong with a decoded-form value, or None when it fits the format."""
    if not isinstance(value, str):
        return f"Field {number} holds a {type(value).__name__}, expecting a string ({fmt.describe()})"
    allowed, what = _ALLOWED[fmt.kind]
    bad = None if allowed.issuperset(value) else next(i for i, ch in enumerate(value) if ch not in allowed)
    if bad is not None:
        if fmt.kind in ("n", "an") and len(value) <= 24 and number not in SENSITIVE_FIELDS:
            found = repr(value)
        else:  # long or sensitive values: name the offending character, never echo the data
            found = f"{value[bad]!r} at offset {bad}"
        return f"Field {number} holds {found}, expecting {what} ({fmt.describe()})"
    size = len(value) // 2 if fmt.kind == "b" else len(value)
    unit = "bytes" if fmt.kind == "b" else "characters"
    if fmt.kind == "b" and len(value) % 2:
        return f"Field {number} holds {len(value)} hex digits, expecting an even number ({fmt.describe()})"
    if fmt.length == "fixed" and size != fmt.max_len:
        return f"Field {number} is {size} {unit}, expecting {fmt.max_len} ({fmt.describe()})"
    if size > fmt.max_len:
        return f"Field {number} is {size} {unit}, expecting at most {fmt.max_len} ({fmt.describe()})"
    return None


def _to_wire_value(value: str, fmt: FieldFormat, dialect: Dialect) -> str:
    if fmt.kind == "z" and fmt.encoding == "bcd":
        return value.replace("=", "D")
    if fmt.kind == "b":
        return value.upper()
    return value


def _from_wire_value(value: str, fmt: FieldFormat, dialect: Dialect) -> str:
    if fmt.kind == "z" and fmt.encoding == "bcd":
        return value.upper().replace("D", "=")
    if fmt.kind == "b":
        return value.upper()
    return value


def _encoded_offset(fields: Mapping[str, str], number: str, dialect: Dialect) -> int | None:
    """Byte offset at which ``number`` would start: the encoded length of everything before it.

    Used only on the error path, so encoding the prefix a second time costs nothing in practice.
    """
    if number in ("t", "p"):
        return {"t": 0, "p": 2 if dialect.bcd else 4}[number]
    try:
        before = {k: _to_wire_value(v, dialect.formats[k], dialect) for k, v in fields.items()
                  if k != "t" and int(k) < int(number) and k in dialect.formats
                  and _value_problem(k, v, dialect.formats[k]) is None}
        raw, _ = iso8583.encode({"t": fields.get("t", "0000"), **before}, dict(dialect.spec))
    except (EncodeError, ValueError):
        return None
    secondary = any(int(k) > 64 for k in fields if k != "t") and not any(int(k) > 64 for k in before)
    return len(raw) + (dialect.spec["1"]["max_len"] if secondary else 0)
