"""Message dialects: pyiso8583 spec dicts plus the per-MTI mandatory fields.

A dialect is the *encoding* switch of ``DESIGN.md`` (how fields become bytes).  Framing (length
prefix, TPDU, CUP header) is a separate switch in :mod:`specs.framing`; settlement and reversal
conventions are separate switches too.  Three dialects exist:

``intl-ascii``
    Readable: every field ASCII, hex-string bitmap, binary fields (PIN block, MAC, ICC data) as
    hex text.  Handy for traces and for hosts that speak ASCII throughout.
``intl-bcd``
    What real INTL ("EDC") terminals send: BCD MTI and numerics, binary bitmap, BCD LL/LLL length
    prefixes, ASCII an/ans fields (domain.md §1.3).
``cup``
    The China UnionPay terminal layout (domain.md §1.3, §2.4, §4): BCD like ``intl-bcd`` but field
    48 is numeric totals, 60/61 are BCD numerics with sub-fields, 62 carries binary key blocks and
    63 the operator code.

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
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

FieldKind = Literal["n", "an", "ans", "z", "b"]
LengthType = Literal["fixed", "LL", "LLL"]
Family = Literal["intl", "cup"]


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
# (domain.md §1.4; jPOS QMUX key "41, 11").
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
    "0320": frozenset({"11", "41", "42", "48", "60"}),
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
#: (domain.md §1.4: 0220 -> 0221, 0400 -> 0401, 0420 -> 0421; jPOS ``setRetransmissionMTI``).
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


def _pyiso_field(fmt: FieldFormat, *, bcd: bool) -> dict[str, Any]:
    """Translate one FieldFormat into a pyiso8583 field spec for an ASCII or a BCD dialect."""
    len_type_ascii = {"fixed": 0, "LL": 2, "LLL": 3}[fmt.length]
    len_type_bcd = {"fixed": 0, "LL": 1, "LLL": 2}[fmt.length]
    spec: dict[str, Any] = {"desc": fmt.desc}
    if fmt.kind == "b":
        if bcd:
            spec.update(data_enc="b", len_enc="bcd", len_type=len_type_bcd, max_len=fmt.max_len)
        else:  # readable dialect: binary data as hex text, length counted in hex characters
            spec.update(data_enc="ascii", len_enc="ascii", len_type=len_type_ascii, max_len=fmt.max_len * 2)
    elif bcd and fmt.kind in ("n", "z"):
        spec.update(data_enc="b", len_enc="bcd", len_type=len_type_bcd, max_len=fmt.max_len, len_count="nibbles")
        # Fixed numerics are right-justified (left pad 0); variable numerics and track data are
        # left-justified and padded on the right, as CUP and EDC terminals send them.
        if fmt.length == "fixed":
            spec["left_pad"] = "0"
        else:
            spec["right_pad"] = "F" if fmt.kind == "z" else "0"
    else:
        spec.update(data_enc="ascii", len_enc="bcd" if bcd else "ascii",
                    len_type=len_type_bcd if bcd else len_type_ascii, max_len=fmt.max_len)
    return spec


@dataclass(frozen=True, kw_only=True, slots=True)
class Dialect:
    """One encoding dialect: its field formats, the pyiso8583 spec built from them, mandatory fields."""

    name: str
    family: Family
    bcd: bool
    formats: Mapping[str, FieldFormat]
    mandatory: Mapping[str, frozenset[str]]
    spec: Mapping[str, Mapping[str, Any]]

    @property
    def known_mtis(self) -> tuple[str, ...]:
        """Every MTI this dialect accepts, sorted."""
        return tuple(sorted(self.mandatory))


def _build(name: str, family: Family, *, bcd: bool) -> Dialect:
    table = {**_COMMON, **(_CUP if family == "cup" else _INTL)}
    formats = {
        number: FieldFormat(kind=kind, length=length, max_len=max_len, desc=desc)
        for number, (kind, length, max_len, desc) in sorted(table.items(), key=lambda kv: int(kv[0]))
    }
    spec: dict[str, Any] = {
        "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "Message header (none; TPDU and CUP header are framing)"},
        "t": ({"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": "Message type indicator (BCD)"}
              if bcd else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 4, "desc": "Message type indicator"}),
        "p": ({"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Primary bitmap (binary)"}
              if bcd else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16, "desc": "Primary bitmap (hex)"}),
        "1": ({"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Secondary bitmap (binary)"}
              if bcd else {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 16, "desc": "Secondary bitmap (hex)"}),
    }
    for number, fmt in formats.items():
        spec[number] = MappingProxyType(_pyiso_field(fmt, bcd=bcd))
    return Dialect(
        name=name,
        family=family,
        bcd=bcd,
        formats=MappingProxyType(formats),
        mandatory=MappingProxyType(_with_repeats(_MANDATORY_CUP if family == "cup" else _MANDATORY_INTL)),
        spec=MappingProxyType({k: MappingProxyType(dict(v)) for k, v in spec.items()}),
    )


DIALECTS: Mapping[str, Dialect] = MappingProxyType({
    "intl-ascii": _build("intl-ascii", "intl", bcd=False),
    "intl-bcd": _build("intl-bcd", "intl", bcd=True),
    "cup": _build("cup", "cup", bcd=True),
})


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
