"""Field 55 (ICC data): BER-TLV per EMV Book 3 Annex B, on top of ``pyemv.tlv``.

Decoded field 55 is a flat ``{tag: value}`` dict of the *top-level* data objects, tags as
upper-case hex, in wire order.  A constructed object (bit 6 of its first tag byte set, e.g. the
issuer script templates 71/72 of a 0210) keeps its raw contents as its value, so a script reaches
the card exactly as the issuer sent it; decode that value again to see inside.

>>> icc = decode_icc("9F2701809F360200419F02060000000012345F2A020156")
>>> icc
{'9F27': b'\\x80', '9F36': b'\\x00A', '9F02': b'\\x00\\x00\\x00\\x00\\x124', '5F2A': b'\\x01V'}
>>> encode_icc(icc).hex().upper()
'9F2701809F360200419F02060000000012345F2A020156'
>>> decode_icc("9F2701809F3602")
Traceback (most recent call last):
...
specs.tlv.TlvError: Tag value malformed, expecting 2 byte(s), found 0 byte(s) left in the data: tag 9F36 offset 7

A tag that occurs twice would lose one of its values in a dict, so it is rejected; so is a length
that is not in its shortest form, which would not survive a round trip.  This holds inside
constructed templates too, because their raw contents are rebuilt from pyemv's nested decode: a 72
script holding two 86 commands is rejected with :class:`TlvError`, never silently merged.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from pyemv import tlv as _pyemv_tlv

_HEX = frozenset(string.hexdigits)


class TlvError(ValueError):
    """ICC data could not be decoded or encoded.

    The text reads ``"<what was found, what was expected>: tag T offset O"``.

    Attributes:
        msg: the description without location.
        tag: the tag (upper-case hex) where decoding or encoding stopped, or None.
        offset: byte offset in the ICC data (characters, for a malformed hex string), or None.
    """

    def __init__(self, msg: str, *, tag: str | None, offset: int | None) -> None:
        super().__init__(f"{msg}: tag {tag or '?'} offset {offset if offset is not None else '?'}")
        self.msg = msg
        self.tag = tag
        self.offset = offset

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keep the keyword-only ctor picklable
        return _rebuild_tlv_error, (self.msg, self.tag, self.offset)


def _rebuild_tlv_error(msg: str, tag: str | None, offset: int | None) -> TlvError:
    return TlvError(msg, tag=tag, offset=offset)


def _is_constructed(tag: str) -> bool:
    """Bit 6 of the first tag byte (EMV Book 3 Annex B1); False for a malformed tag, which
    pyemv then rejects with its own message."""
    try:
        first = bytes.fromhex(tag[:2])
    except ValueError:
        return False
    return len(first) == 1 and bool(first[0] & 0b0010_0000)


def _from_hex(text: str) -> bytes:
    bad = next((i for i, ch in enumerate(text) if ch not in _HEX), None)
    if bad is not None:
        raise TlvError(f"ICC data holds {text[bad]!r}, expecting hex digits only", tag=None, offset=bad)
    if len(text) % 2:
        raise TlvError(f"ICC data is {len(text)} hex digits, expecting an even number", tag=None, offset=len(text))
    return bytes.fromhex(text)


def decode_icc(data: bytes | str) -> dict[str, bytes]:
    """Decode field 55 into its top-level data objects.

    Args:
        data: the ICC data as bytes, or as the hex string the codec gives for field 55.

    Returns:
        ``{tag: value}`` in wire order; constructed objects keep their raw contents.

    Raises:
        TlvError: not hex, truncated tag, length or value, a repeated tag or a length not in its
        shortest form.  The text names tags and offsets, never values (field 55 is card data).
    """
    raw = _from_hex(data) if isinstance(data, str) else bytes(data)
    try:
        nested: dict[str, Any] = _pyemv_tlv.decode(raw)
    except _pyemv_tlv.DecodeError as exc:
        raise TlvError(f"{exc.msg}, found {len(raw) - exc.offset} byte(s) left in the data",
                       tag=exc.tag, offset=exc.offset) from None
    decoded = {tag: _pyemv_tlv.encode(value) if isinstance(value, dict) else value
               for tag, value in nested.items()}
    _check_round_trip(raw, decoded)
    return decoded


def _check_round_trip(raw: bytes, decoded: Mapping[str, bytes]) -> None:
    """Reject input whose dict form loses information: a repeated tag, a non-minimal length.

    Re-encodes tag by tag and stops at the first object that does not reproduce the input.
    """
    offset = 0
    for tag, value in decoded.items():
        again = encode_icc({tag: value})
        if raw[offset:offset + len(again)] != again:
            raise TlvError(f"Tag {tag} does not re-encode to the bytes received, expecting every tag once "
                           f"per template and lengths in shortest form", tag=tag, offset=offset)
        offset += len(again)
    if offset != len(raw):  # a repeated tag: the dict kept one value, the input had more bytes
        raise TlvError(f"ICC data has {len(raw) - offset} byte(s) after the last distinct tag, "
                       f"expecting each tag once", tag=None, offset=offset)


def encode_icc(tags: Mapping[str, bytes | str]) -> bytes:
    """Encode top-level data objects into field 55 bytes.

    Args:
        tags: ``{tag: value}``; tags are hex, values bytes or hex strings.  The value of a
            constructed tag is its raw contents (as :func:`decode_icc` returns it).

    Returns:
        The BER-TLV bytes (lengths in shortest form), in the mapping's order.

    Raises:
        TlvError: a malformed tag, a value that is neither bytes nor hex, or constructed contents
        that are not themselves valid TLV.  ``offset`` is where the object would start.
    """
    out = bytearray()
    for tag, value in tags.items():
        tag_hex = tag.upper()
        item: Any = value
        if isinstance(value, str):
            try:
                item = bytes.fromhex(value)
            except ValueError:
                raise TlvError(f"Value of tag {tag_hex} is not hex, expecting bytes or a hex string",
                               tag=tag_hex, offset=len(out)) from None
        try:
            if isinstance(item, (bytes, bytearray)) and _is_constructed(tag_hex):
                item = _pyemv_tlv.decode(bytes(item))  # pyemv encodes constructed objects from a dict
            out += _pyemv_tlv.encode({tag_hex: item})
        except _pyemv_tlv.DecodeError as exc:
            raise TlvError(f"Contents of constructed tag {tag_hex} are not TLV ({exc.msg} at tag {exc.tag} "
                           f"offset {exc.offset} inside it), expecting nested data objects",
                           tag=tag_hex, offset=len(out)) from None
        except _pyemv_tlv.EncodeError as exc:
            raise TlvError(exc.msg, tag=exc.tag, offset=len(out)) from None
    return bytes(out)
