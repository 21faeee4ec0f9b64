"""Read a jPOS GenericPackager XML file into field formats (a host's layout as integrators have it).

A GenericPackager file lists one ``isofield`` per data element::

    <isopackager>
      <isofield id="0" length="4" name="MTI" class="org.jpos.iso.IFB_NUMERIC" pad="true"/>
      <isofield id="1" length="16" name="BITMAP" class="org.jpos.iso.IFB_BITMAP"/>
      <isofield id="2" length="19" name="PAN" class="org.jpos.iso.IFB_LLNUM" pad="false"/>
      ...
    </isopackager>

The class names the field's family: ``IFA_`` ASCII (digits and ASCII length prefixes), ``IFB_``
binary (BCD digits, BCD length prefixes, raw bytes), ``IFE_`` EBCDIC, ``IF_CHAR`` fixed ASCII
text; ``LL``/``LLL`` a variable length, ``H`` in ``IFB_LLH*`` a binary length byte.  For BCD
numerics ``pad="true"`` means padded on the left (right-aligned), as jPOS reads it, and the pad
nibble is 0.  Field 0 sets
how the MTI is carried, field 1 the bitmap; the other fields become the dialect's field formats,
and only they exist (a field the file does not define cannot be sent).  What a field *holds*
(digits, track data, text) is kept from the base dialect where the class allows it: a numeric
class on field 35 stays track data (``=`` sent as nibble D).

The XML is parsed with defusedxml (no entity expansion, no external references).  Every error
names the file, the line and the field::

    host.xml line 9: key 'isofield[id=22].class': unknown packager class org.jpos.iso.IFX_FOO, ...
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from specs.dialects import _base_formats
from specs.profile import ProfileError, WireProfile

#: Packager class (without ``org.jpos.iso.``) -> (content class, length type, data encoding, length encoding).
#: Content class: ``num`` digits, ``char`` text, ``bin`` bytes.
CLASSES: dict[str, tuple[str, str, str, str]] = {
    "IFA_NUMERIC": ("num", "fixed", "ascii", "ascii"),
    "IFA_LLNUM": ("num", "LL", "ascii", "ascii"),
    "IFA_LLLNUM": ("num", "LLL", "ascii", "ascii"),
    "IF_CHAR": ("char", "fixed", "ascii", "ascii"),
    "IFA_LLCHAR": ("char", "LL", "ascii", "ascii"),
    "IFA_LLLCHAR": ("char", "LLL", "ascii", "ascii"),
    "IFA_BINARY": ("bin", "fixed", "ascii", "ascii"),
    "IFB_NUMERIC": ("num", "fixed", "bcd", "bcd"),
    "IFB_LLNUM": ("num", "LL", "bcd", "bcd"),
    "IFB_LLLNUM": ("num", "LLL", "bcd", "bcd"),
    "IFB_LLHNUM": ("num", "LL", "bcd", "binary"),
    "IFB_LLCHAR": ("char", "LL", "ascii", "bcd"),
    "IFB_LLLCHAR": ("char", "LLL", "ascii", "bcd"),
    "IFB_LLHCHAR": ("char", "LL", "ascii", "binary"),
    "IFB_BINARY": ("bin", "fixed", "binary", "bcd"),
    "IFB_LLBINARY": ("bin", "LL", "binary", "bcd"),
    "IFB_LLLBINARY": ("bin", "LLL", "binary", "bcd"),
    "IFB_LLHBINARY": ("bin", "LL", "binary", "binary"),
    "IFE_NUMERIC": ("num", "fixed", "ebcdic", "ebcdic"),
    "IFE_CHAR": ("char", "fixed", "ebcdic", "ebcdic"),
    "IFE_LLNUM": ("num", "LL", "ebcdic", "ebcdic"),
    "IFE_LLCHAR": ("char", "LL", "ebcdic", "ebcdic"),
    "IFE_LLLCHAR": ("char", "LLL", "ebcdic", "ebcdic"),
    "IFE_LLLBINARY": ("bin", "LLL", "binary", "ebcdic"),
}
#: Field 0 (MTI) classes and the MTI encoding each means.
MTI_CLASSES = {"IFA_NUMERIC": "ascii", "IFB_NUMERIC": "bcd", "IFE_NUMERIC": "ebcdic"}
#: Field 1 (bitmap) classes and the bitmap encoding each means.
BITMAP_CLASSES = {"IFA_BITMAP": "ascii", "IFB_BITMAP": "binary"}
_PREFIX = "org.jpos.iso."


class _Target:
    """ElementTree target that keeps the line of every ``isofield`` (ElementTree drops lines)."""

    def __init__(self) -> None:
        self.parser: Any = None
        self.root: str | None = None
        self.fields: list[tuple[int, dict[str, str]]] = []

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        line = int(self.parser.CurrentLineNumber) if self.parser is not None else 1
        if self.root is None:
            self.root = tag
        elif tag == "isofield":
            self.fields.append((line, dict(attrs)))

    def end(self, tag: str) -> None:
        pass

    def data(self, data: str) -> None:
        pass

    def close(self) -> None:
        pass


def read_packager(path: str) -> tuple[dict[str, dict[str, Any]], str, str]:
    """Field formats, MTI encoding and bitmap encoding of a GenericPackager file.

    Returns:
        ``({field: FieldFormat attributes}, mti_encoding, bitmap_encoding)``.

    Raises:
        ProfileError: unreadable or malformed XML, an unknown class, a bad id or length
            (file, line and field id named).
    """
    file = Path(path).name
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read the packager file: {exc.strerror or exc}", file=path, line=1,
                           key=None) from None
    target = _Target()
    parser = safe_xml.DefusedXMLParser(target=target)
    target.parser = parser.parser
    try:
        parser.feed(text)
        parser.close()
    except ParseError as exc:
        raise ProfileError(f"XML syntax error: {exc}", file=file, line=exc.position[0], key=None) from None
    except DefusedXmlException as exc:
        raise ProfileError(f"XML refused (entities and external references are not read): {exc}", file=file,
                           line=int(getattr(exc, "lineno", None) or 1), key=None) from None
    if target.root != "isopackager":
        raise ProfileError(f"root element <{target.root}>, expecting <isopackager>", file=file, line=1, key=None)
    base = _base_formats("intl-bcd") | _base_formats("cup")
    formats: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    mti_encoding, bitmap_encoding = "bcd", "binary"
    for line, attrs in target.fields:
        number = attrs.get("id", "")
        where = f"isofield[id={number}]"
        if not number.isdigit() or int(number) > 128:
            raise ProfileError(f"id {number!r} is not a field number 0-128", file=file, line=line, key=f"{where}.id")
        number = str(int(number))
        if number in lines:
            raise ProfileError(f"field {number} defined twice, first on line {lines[number]}", file=file, line=line,
                               key=where)
        lines[number] = line
        cls = attrs.get("class", "")
        short = cls.removeprefix(_PREFIX)
        if number == "0":
            if short not in MTI_CLASSES:
                raise _unknown(cls, MTI_CLASSES, file, line, where, "the MTI (field 0)")
            mti_encoding = MTI_CLASSES[short]
            continue
        if number == "1":
            if short not in BITMAP_CLASSES:
                raise _unknown(cls, BITMAP_CLASSES, file, line, where, "the bitmap (field 1)")
            bitmap_encoding = BITMAP_CLASSES[short]
            continue
        if not cls.startswith(_PREFIX) or short not in CLASSES:
            raise _unknown(cls, CLASSES, file, line, where, f"field {number}")
        length_text = attrs.get("length", "")
        if not length_text.isdigit() or int(length_text) < 1:
            raise ProfileError(f"length {length_text!r} is not a whole number above 0", file=file, line=line,
                               key=f"{where}.length")
        content, length, encoding, length_encoding = CLASSES[short]
        known = base.get(number)
        kind: str
        if content == "num":
            kind = known.kind if known is not None and known.kind in ("n", "z") else "n"
        elif content == "char":
            kind = known.kind if known is not None and known.kind in ("an", "ans") else "ans"
        else:
            kind = "b"
        fmt: dict[str, Any] = {"kind": kind, "length": length, "max_len": int(length_text), "encoding": encoding,
                               "length_encoding": length_encoding,
                               "desc": attrs.get("name") or (known.desc if known else f"Field {number}")}
        if encoding == "bcd":
            padded_left = attrs.get("pad", "false").lower() == "true"
            fmt["align"] = "right" if padded_left else "left"
            fmt["pad"] = "0"  # jPOS's BCD interpreters pad with 0, track data too
        formats[number] = fmt
    if not formats:
        raise ProfileError("no isofield elements, expecting one per data element", file=file, line=1, key=None)
    return formats, mti_encoding, bitmap_encoding


def _unknown(cls: str, known: dict[str, Any], file: str, line: int, where: str, what: str) -> ProfileError:
    return ProfileError(f"unknown packager class {cls or '(none)'} for {what}, expecting one of "
                        f"{', '.join(_PREFIX + k for k in sorted(known))}", file=file, line=line, key=f"{where}.class")


def apply_packager(profile: WireProfile, path: str) -> WireProfile:
    """``profile`` with the field layout of a packager file: only the file's fields exist; the
    profile's own field overrides still apply on top of them."""
    formats, mti_encoding, bitmap_encoding = read_packager(path)
    fields = {number: MappingProxyType({**fmt, **profile.fields.get(number, {})}) for number, fmt in formats.items()}
    return replace(profile, fields=MappingProxyType(fields), exact_fields=True, mti_encoding=mti_encoding,
                   bitmap_encoding=bitmap_encoding, packager=path)
