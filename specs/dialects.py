"""Message dialects: pyiso8583 spec dicts plus the per-MTI mandatory fields.

A dialect is the *encoding* switch (how fields become bytes).  Framing (length
prefix, TPDU, CUP header) is a separate switch in :mod:`specs.framing`; settlement and reversal
conventions are separate switches too.  Three dialects exist:

``intl-ascii``
    Readable: every field ASCII, hex-string bitmap, binary fields (PIN block, MAC, ICC data) as
    hex text.  Handy for traces and for hosts that speak ASCII throughout.
``intl-bcd``
    What real INTL ("EDC") terminals send: BCD MTI and numerics, binary bitmap, BCD LL/LLL length
    prefixes, ASCII an/ans fields.
``cup``
    The China UnionPay terminal layout: BCD like ``intl-bcd`` but field 48 is numeric totals,
    60/61 are BCD numerics with sub-fields, 62 carries binary key blocks and 63 the operator code;
    field 22 is left-aligned BCD (``012`` is sent ``01 20``), 23 right-aligned.

Each dialect is built from a :class:`specs.profile.WireProfile` (:func:`build_dialect`); a host
profile file or a jPOS packager file (:func:`load_dialect`) builds one that matches a given host,
and the dialect carries it (``dialect.profile``) for the questions that differ between hosts.

Whatever the dialect, a decoded message is a plain ``dict[str, str]``: ``"t"`` is the MTI and
``"2"``..``"128"`` are data elements.  Numeric fields are digit strings, binary fields are
upper-case hex strings and track data uses ``=`` as separator (BCD dialects carry it as nibble
``D`` on the wire; the codec converts).

>>> d = get_dialect("cup")
>>> d.family, d.formats["60"].kind, d.formats["60"].max_len
('cup', 'n', 17)
>>> sorted(d.mandatory["0200"])
['11', '22', '25', '3', '41', '42', '49', '60']
>>> get_dialect("intl-ascii").formats["4"].describe()
'n 12'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

from specs.profile import BASE_DIALECTS, WireProfile, default_profile, load_profile

FieldKind = Literal["n", "an", "ans", "z", "b"]
LengthType = Literal["fixed", "LL", "LLL"]
Family = Literal["intl", "cup"]
#: How a field's data is carried: ASCII text, packed BCD nibbles (n and z only), raw bytes (b only)
#: or EBCDIC text (code page 500).
Encoding = Literal["ascii", "bcd", "binary", "ebcdic"]
#: How an LL/LLL length prefix is carried: ASCII digits, BCD, a big-endian binary count, or EBCDIC digits.
LengthEncoding = Literal["ascii", "bcd", "binary", "ebcdic"]
#: Where an odd number of BCD digits sits in its bytes: left (pad nibble after) or right (pad before).
Alignment = Literal["left", "right"]


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldFormat:
    """What a data element may hold, independent of how it is encoded.

    ``max_len`` counts characters for n/an/ans/z fields and *bytes* for binary (``b``) fields,
    whose decoded value is a hex string of twice that many characters.
    """

    kind: FieldKind
    length: LengthType
    max_len: int
    desc: str
    encoding: Encoding = "ascii"
    length_encoding: LengthEncoding = "ascii"
    align: Alignment = "left"
    #: The nibble that fills an odd-length BCD value up to whole bytes.
    pad: str = "0"

    def describe(self) -> str:
        """Short format text used in error messages, e.g. ``n 12`` or ``ans ..999``."""
        dots = {"fixed": "", "LL": "..", "LLL": "..."}[self.length]
        return f"{self.kind} {dots}{self.max_len}"


# The data elements both families use the same way.  (kind, length type, max_len, description.)
_COMMON: dict[str, tuple[FieldKind, LengthType, int, str]] = {
    "2": ("n", "LL", 19, "Primary account number (PAN)"),
    "3": ("n", "fixed", 6, "Processing code"),
    "4": ("n", "fixed", 12, "Amount, transaction (minor units)"),
    "11": ("n", "fixed", 6, "System trace audit number (STAN)"),
    "12": ("n", "fixed", 6, "Time, local transaction (hhmmss)"),
    "13": ("n", "fixed", 4, "Date, local transaction (MMDD)"),
    "14": ("n", "fixed", 4, "Date, expiration (YYMM)"),
    "15": ("n", "fixed", 4, "Date, settlement (MMDD)"),
    "22": ("n", "fixed", 3, "POS entry mode"),
    "23": ("n", "fixed", 3, "Card sequence number"),
    "25": ("n", "fixed", 2, "POS condition code"),
    "26": ("n", "fixed", 2, "POS PIN capture code"),
    "32": ("n", "LL", 11, "Acquiring institution identification code"),
    "35": ("z", "LL", 37, "Track 2 data"),
    "36": ("z", "LLL", 104, "Track 3 data"),
    "37": ("an", "fixed", 12, "Retrieval reference number (RRN)"),
    "38": ("an", "fixed", 6, "Authorization identification response"),
    "39": ("an", "fixed", 2, "Response code (CUP 0400: reversal reason)"),
    "41": ("ans", "fixed", 8, "Card acceptor terminal identification (TID)"),
    "42": ("ans", "fixed", 15, "Card acceptor identification code (MID)"),
    "44": ("an", "LL", 25, "Additional response data"),
    "45": ("ans", "LL", 76, "Track 1 data"),
    "49": ("an", "fixed", 3, "Currency code, transaction"),
    "52": ("b", "fixed", 8, "PIN block (ISO 9564)"),
    "53": ("n", "fixed", 16, "Security related control information"),
    "54": ("an", "LLL", 20, "Additional amounts (tip)"),
    "55": ("b", "LLL", 255, "ICC data (BER-TLV)"),
    "64": ("b", "fixed", 8, "Message authentication code (MAC)"),
}

_INTL: dict[str, tuple[FieldKind, LengthType, int, str]] = {
    "24": ("n", "fixed", 3, "Network international identifier (NII)"),
    "48": ("ans", "LLL", 322, "Additional data, private"),
    "60": ("ans", "LLL", 999, "Private: batch number (0500) / original MTI+STAN (0320)"),
    "61": ("ans", "LLL", 999, "Private use"),
    "62": ("ans", "LLL", 999, "Private: invoice number"),
    "63": ("ans", "LLL", 999, "Private: settlement totals (0500)"),
    "70": ("n", "fixed", 3, "Network management information code"),
}

_CUP: dict[str, tuple[FieldKind, LengthType, int, str]] = {
    "48": ("n", "LLL", 322, "Additional data: settlement totals (0500) / upload records (0320)"),
    "60": ("n", "LLL", 17, "Reserved private: 60.1 txn type, 60.2 batch, 60.3 network mgmt code"),
    "61": ("n", "LLL", 29, "Original message: 61.1 batch, 61.2 STAN, 61.3 date, ..."),
    "62": ("b", "LLL", 512, "Reserved private: working keys (0810), terminal info (0800)"),
    "63": ("ans", "LLL", 163, "Reserved private: 63.1 operator code"),
}

# Per-MTI mandatory data elements (presence only; conditional fields are checked by the flows).
# Every request and response carries 11 and 41: responses are matched on MTI+10, 11 and 41
# (jPOS QMUX key "41, 11").
_MANDATORY_INTL: dict[str, frozenset[str]] = {
    "0100": frozenset({"3", "4", "11", "22", "41", "42"}),
    "0110": frozenset({"3", "11", "39", "41"}),
    "0120": frozenset({"3", "4", "11", "41", "42"}),
    "0130": frozenset({"11", "39", "41"}),
    "0200": frozenset({"3", "11", "22", "41", "42"}),
    "0210": frozenset({"3", "11", "39", "41"}),
    "0220": frozenset({"3", "4", "11", "41", "42"}),
    "0230": frozenset({"11", "39", "41"}),
    "0320": frozenset({"3", "11", "41", "42", "60"}),
    "0330": frozenset({"11", "39", "41"}),
    "0400": frozenset({"3", "4", "11", "41", "42"}),
    "0410": frozenset({"11", "39", "41"}),
    "0500": frozenset({"3", "11", "41", "42", "60", "63"}),
    "0510": frozenset({"11", "39", "41"}),
    "0800": frozenset({"11", "41", "70"}),
    "0810": frozenset({"11", "39", "41", "70"}),
    "0820": frozenset({"11", "41", "70"}),
    "0830": frozenset({"11", "39", "41", "70"}),
}

_MANDATORY_CUP: dict[str, frozenset[str]] = {
    "0100": frozenset({"3", "4", "11", "22", "25", "41", "42", "49", "60"}),
    "0110": frozenset({"3", "11", "39", "41", "42", "60"}),
    "0120": frozenset({"3", "4", "11", "41", "42", "49", "60"}),
    "0130": frozenset({"11", "39", "41", "42", "60"}),
    "0200": frozenset({"3", "11", "22", "25", "41", "42", "49", "60"}),
    "0210": frozenset({"3", "11", "39", "41", "42", "60"}),
    "0220": frozenset({"3", "4", "11", "41", "42", "49", "60"}),
    "0230": frozenset({"11", "39", "41", "42", "60"}),
    "0320": frozenset({"11", "41", "42", "60"}),  # 48: the record list, or a full record (2, 3, 4, 61 ...)
    "0330": frozenset({"11", "39", "41", "42", "60"}),
    "0400": frozenset({"3", "4", "11", "39", "41", "42", "49", "60"}),
    "0410": frozenset({"11", "39", "41", "42", "60"}),
    "0500": frozenset({"11", "41", "42", "48", "49", "60"}),
    "0510": frozenset({"11", "39", "41", "42", "48", "60"}),
    "0800": frozenset({"11", "41", "42", "60"}),
    "0810": frozenset({"11", "39", "41", "42", "60"}),
    "0820": frozenset({"11", "41", "42", "60"}),
    "0830": frozenset({"11", "39", "41", "42", "60"}),
}


#: Repeat (retransmission) MTIs, last digit 1, and the first transmission whose rules they follow
#: (0220 -> 0221, 0400 -> 0401, 0420 -> 0421; jPOS ``setRetransmissionMTI``).
REPEAT_OF: Mapping[str, str] = MappingProxyType({"0121": "0120", "0221": "0220", "0401": "0400", "0421": "0420"})


def _with_repeats(table: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Reversal advices (0420/0430) follow 0400/0410; every repeat MTI follows its first transmission."""
    table = {**table, "0420": table["0400"], "0430": table["0410"]}
    return {**table, **{repeat: table[first] for repeat, first in REPEAT_OF.items()}}


def response_mti(mti: str) -> str:
    """The response MTI for a request MTI: request + 10 (0200 -> 0210, 0400 -> 0410).

    >>> response_mti("0200"), response_mti("0421")
    ('0210', '0430')

    Repeats (last digit 1) answer with the same response as the original (0221 -> 0230).
    """
    if len(mti) != 4 or not mti.isdigit() or mti[2] not in "02468":
        raise ValueError(f"MTI {mti!r} is not a request MTI, expecting 4 digits with an even third digit")
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def is_request(mti: str) -> bool:
    """True for request MTIs (third digit even: 0200, 0221, 0400)."""
    return len(mti) == 4 and mti.isdigit() and mti[2] in "02468"


def _with_encodings(fmt: FieldFormat, *, bcd: bool) -> FieldFormat:
    """A base format with the encodings of an ASCII (``bcd=False``) or a BCD dialect filled in.

    BCD dialects: numerics and track data are packed BCD, binary fields raw bytes, length
    prefixes BCD.  Odd-length fixed numerics are right-aligned (pad nibble 0 in front); variable
    numerics and track data are left-aligned with the pad after them (0, F for track data).
    """
    if not bcd:
        return replace(fmt, encoding="ascii", length_encoding="ascii")
    encoding: Encoding = "bcd" if fmt.kind in ("n", "z") else "binary" if fmt.kind == "b" else "ascii"
    align: Alignment = "right" if fmt.length == "fixed" else "left"
    return replace(fmt, encoding=encoding, length_encoding="bcd", align=align, pad="F" if fmt.kind == "z" else "0")


#: CUP fixed numerics that are *left*-aligned (服务点输入方式码 N3 is sent ``01 20`` for 012): the
#: CUP field table says 左靠 for 22 and 右靠 (right) for 23; the other fixed numerics are even-length.
_CUP_LEFT_ALIGNED = frozenset({"22"})


def pyiso_field(fmt: FieldFormat) -> dict[str, Any]:
    """Translate one FieldFormat into a pyiso8583 field spec.

    ``max_len`` counts characters (nibbles for BCD); binary fields sent as hex text count hex
    characters on the wire.
    """
    len_type = {"fixed": 0, "LL": 2, "LLL": 3}[fmt.length]
    if fmt.length_encoding in ("bcd", "binary"):  # packed lengths: one byte for LL, two for LLL
        len_type = {"fixed": 0, "LL": 1, "LLL": 2}[fmt.length]
    len_enc = {"ascii": "ascii", "bcd": "bcd", "binary": "b", "ebcdic": "cp500"}[fmt.length_encoding]
    spec: dict[str, Any] = {"desc": fmt.desc, "len_enc": len_enc, "len_type": len_type}
    if fmt.encoding == "binary":
        spec.update(data_enc="b", max_len=fmt.max_len)
    elif fmt.kind == "b":  # binary data as hex text, length counted in hex characters
        spec.update(data_enc="ascii", max_len=fmt.max_len * 2)
    elif fmt.encoding == "bcd":
        spec.update(data_enc="b", max_len=fmt.max_len, len_count="nibbles")
        spec["left_pad" if fmt.align == "right" else "right_pad"] = fmt.pad
    else:
        spec.update(data_enc="cp500" if fmt.encoding == "ebcdic" else "ascii", max_len=fmt.max_len)
    return spec


@dataclass(frozen=True, kw_only=True, slots=True)
class Dialect:
    """One encoding dialect: its field formats, the pyiso8583 spec built from them, mandatory fields,
    and the profile it was built from (the questions that differ between hosts go to it)."""

    name: str
    family: Family
    #: The MTI is BCD (2 bytes) rather than 4 ASCII digits.
    bcd: bool
    formats: Mapping[str, FieldFormat]
    mandatory: Mapping[str, frozenset[str]]
    spec: Mapping[str, Mapping[str, Any]]
    profile: WireProfile

    @property
    def known_mtis(self) -> tuple[str, ...]:
        """Every MTI this dialect accepts, sorted."""
        return tuple(sorted(self.mandatory))

    def describe(self) -> str:
        """The dialect in one phrase, for logs and hints: ``cup`` or ``cup (profile acme from acme.yaml)``."""
        p = self.profile
        if not p.source and not p.packager:
            return self.name
        text = f"{p.base} (profile {p.name}" + (f" from {p.source}" if p.source else "")
        return text + (f", packager {p.packager}" if p.packager else "") + ")"


def _header_spec(mti_encoding: str, bitmap_binary: bool) -> dict[str, Any]:
    mti_bcd = mti_encoding == "bcd"
    return {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0,
              "desc": "Message header (none; TPDU and CUP header are framing)"},
        "t": ({"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": "Message type indicator (BCD)"}
              if mti_bcd else {"data_enc": "cp500" if mti_encoding == "ebcdic" else "ascii", "len_enc": "ascii",
                               "len_type": 0, "max_len": 4, "desc": "Message type indicator"}),
        "p": ({"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Primary bitmap (binary)"}
              if bitmap_binary else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16,
                                     "desc": "Primary bitmap (hex)"}),
        "1": ({"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Secondary bitmap (binary)"}
              if bitmap_binary else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16,
                                     "desc": "Secondary bitmap (hex)"}),
    }


def _base_formats(name: str) -> dict[str, FieldFormat]:
    family = BASE_DIALECTS[name]
    bcd = name != "intl-ascii"
    table = {**_COMMON, **(_CUP if family == "cup" else _INTL)}
    formats = {}
    for number, (kind, length, max_len, desc) in sorted(table.items(), key=lambda kv: int(kv[0])):
        fmt = _with_encodings(FieldFormat(kind=kind, length=length, max_len=max_len, desc=desc), bcd=bcd)
        if family == "cup" and number in _CUP_LEFT_ALIGNED:
            fmt = replace(fmt, align="left")
        formats[number] = fmt
    return formats


def _format_problem(fmt: FieldFormat) -> str | None:
    if fmt.encoding == "bcd" and fmt.kind not in ("n", "z"):
        return f"encoding bcd needs type n or z, found type {fmt.kind}"
    if fmt.encoding == "binary" and fmt.kind != "b":
        return f"encoding binary needs type b, found type {fmt.kind}"
    if fmt.kind == "b" and fmt.encoding in ("bcd", "ebcdic"):
        return f"type b is sent as binary or ascii (hex text), found {fmt.encoding}"
    limit = {"fixed": 999, "LL": 99, "LLL": 999}[fmt.length]
    if fmt.max_len > limit:
        return f"max_len {fmt.max_len} does not fit a {fmt.length} length (at most {limit})"
    return None


def build_dialect(profile: WireProfile) -> Dialect:
    """The dialect a profile describes: its base dialect with the profile's overrides applied.

    Raises:
        ProfileError: an override that cannot be encoded, a new field without a complete format,
            or a profile that leaves out a field the dialect requires (file, line and key named).
    """
    base = profile.base
    family: Family = "cup" if BASE_DIALECTS[base] == "cup" else "intl"
    formats = _base_formats(base)
    if profile.exact_fields:
        formats = {k: v for k, v in formats.items() if k in profile.fields}
    for number, changes in profile.fields.items():
        key = f"fields.{number}"
        if number in formats:
            fmt = replace(formats[number], **changes)
        else:
            missing = [k for k in ("kind", "length", "max_len") if k not in changes]
            if missing:
                names = {"kind": "type", "length": "length", "max_len": "max_len"}
                raise profile.error(key, f"field {number} is not in dialect {base}: its format needs "
                                         f"{', '.join(names[m] for m in missing)}")
            default = _with_encodings(FieldFormat(kind=changes["kind"], length=changes["length"],
                                                  max_len=changes["max_len"], desc=f"Field {number}"),
                                      bcd=base != "intl-ascii")
            fmt = replace(default, **changes)
        problem = _format_problem(fmt)
        if problem:
            raise profile.error(key, f"field {number}: {problem}")
        formats[number] = fmt
    formats = dict(sorted(formats.items(), key=lambda kv: int(kv[0])))
    mandatory = _with_repeats(_MANDATORY_CUP if family == "cup" else _MANDATORY_INTL)
    if profile.intl_sign_on == "3=920000":  # sign-on by processing code: 70 is left for sign-off and echo
        mandatory = {**mandatory, "0800": mandatory["0800"] - {"70"}, "0810": mandatory["0810"] - {"70"}}
    if family == "intl" and profile.batch_field != "60":
        mandatory = {**mandatory, "0500": mandatory["0500"] - {"60"} | {profile.batch_field}}
    if profile.exact_fields:  # a packager that defines fewer fields than the dialect requires: keep what it has
        mandatory = {mti: frozenset(f for f in fields if f in formats) for mti, fields in mandatory.items()}
    for mti, omitted in profile.omit_fields.items():
        clash = sorted(omitted & mandatory.get(mti, frozenset()), key=int)
        if clash:
            raise profile.error(f"messages.{mti}.omit", f"field {clash[0]} is mandatory in {mti} "
                                                        f"for dialect {base}, it cannot be omitted")
    for mti, added in profile.add_fields.items():
        undefined = sorted((f for f in added if f not in formats), key=int)
        if undefined:
            raise profile.error(f"messages.{mti}", f"field {undefined[0]} is not defined in this profile's fields")
    mti_encoding = profile.mti_encoding or ("ascii" if base == "intl-ascii" else "bcd")
    bitmap_binary = (profile.bitmap_encoding or ("ascii" if base == "intl-ascii" else "binary")) != "ascii"
    spec: dict[str, Any] = _header_spec(mti_encoding, bitmap_binary)
    for number, fmt in formats.items():
        spec[number] = pyiso_field(fmt)
    return Dialect(
        name=profile.name,
        family=family,
        bcd=mti_encoding == "bcd",
        formats=MappingProxyType(formats),
        mandatory=MappingProxyType(mandatory),
        spec=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in spec.items()}),
        profile=profile,
    )


DIALECTS: Mapping[str, Dialect] = MappingProxyType({name: build_dialect(default_profile(name)) for name in BASE_DIALECTS})


def get_dialect(name: str) -> Dialect:
    """Look a dialect up by name.

    Raises:
        ValueError: naming the unknown dialect and the known ones.

    >>> get_dialect("visa")
    Traceback (most recent call last):
    ...
    ValueError: Unknown dialect 'visa', expecting one of cup, intl-ascii, intl-bcd
    """
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"Unknown dialect {name!r}, expecting one of {', '.join(sorted(DIALECTS))}") from None


def load_dialect(name: str, profile: str | None = None, packager: str | None = None) -> Dialect:
    """The dialect a command line asks for: ``name``, or the ``profile`` (file or shipped name, whose
    own dialect wins), with the fields of a jPOS ``packager`` file on top.

    Raises:
        ProfileError: a malformed profile or packager file (file, line, key named).
    """
    wire = load_profile(profile) if profile else default_profile(name)
    if packager:
        from specs.packager import apply_packager  # the packager module builds on this one
        wire = apply_packager(wire, packager)
    return build_dialect(wire)
