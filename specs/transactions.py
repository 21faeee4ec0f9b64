"""Transaction kinds and how each is carried on the wire, per dialect family.

The terminal builds requests from this table and the host recognises them with :func:`identify`,
so the two sides cannot drift apart.  Sources: docs/domain.md#message-flows (processing codes), docs/domain.md#dialects-and-framing (CUP 60.1
table with 25 and "引发冲正"), docs/domain.md#f5, docs/domain.md#f6, docs/domain.md#f8.

=================  =====================  ==========================  =========  ========
kind               INTL MTI / 3           CUP MTI / 3 / 60.1 / 25     reversible  advice
=================  =====================  ==========================  =========  ========
balance            0200 310000            0200 310000 01 00           no         no
sale               0200 000000            0200 000000 22 00           yes        no
void               0200 020000            0200 200000 23 00           yes        no
refund             0200 200000            0220 200000 25 00           INTL only  CUP only
preauth            0100 300000            0100 030000 10 06           yes        no
preauth_void       0120 020000            0100 200000 11 06           CUP only   INTL only
completion         0220 000000 (38=auth)  0200 000000 20 06           CUP only   INTL only
completion_void    0200 020000            0200 200000 21 06           yes        no
offline_sale       0220 000000            0220 000000 30 00           no         yes
adjust             0220 020000            0220 000000 34 00           no         yes
=================  =====================  ==========================  =========  ========

INTL ``completion`` and ``offline_sale`` share MTI and processing code; a completion carries
field 38 (the pre-auth's approval code) *and* field 37 (its RRN), an offline sale only 38.
INTL ``void`` and ``completion_void`` share them too and differ in field 25 (06 for the pre-auth
family).  Reversals (0400) carry the original's processing code (and CUP 60.1).

>>> layout("sale", "cup")
Layout(kind='sale', mti='0200', processing_code='000000', cup_type='22', condition='00', reversible=True)
>>> identify({"t": "0220", "3": "200000", "60": "25000001000"}, "cup")
'refund'
>>> identify({"t": "0200", "3": "020000", "37": "263260000001"}, "intl")
'void'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Layout:
    """How one transaction kind is sent in one family."""

    kind: str
    mti: str
    processing_code: str
    cup_type: str | None  # CUP 60.1
    condition: str  # field 25
    reversible: bool

    @property
    def advice(self) -> bool:
        """Sent as an advice (0220): queued durably, retransmitted as 0221, never reversed."""
        return self.mti == "0220" or self.mti == "0120"


_INTL: dict[str, tuple[str, str, str, bool]] = {
    "balance": ("0200", "310000", "00", False),
    "sale": ("0200", "000000", "00", True),
    "void": ("0200", "020000", "00", True),
    "refund": ("0200", "200000", "00", True),
    "preauth": ("0100", "300000", "06", True),
    "preauth_void": ("0120", "020000", "06", False),
    "completion": ("0220", "000000", "06", False),
    "completion_void": ("0200", "020000", "06", True),
    "offline_sale": ("0220", "000000", "00", False),
    "adjust": ("0220", "020000", "00", False),
}

_CUP: dict[str, tuple[str, str, str, str, bool]] = {
    "balance": ("0200", "310000", "01", "00", False),
    "sale": ("0200", "000000", "22", "00", True),
    "void": ("0200", "200000", "23", "00", True),
    "refund": ("0220", "200000", "25", "00", False),
    "preauth": ("0100", "030000", "10", "06", True),
    "preauth_void": ("0100", "200000", "11", "06", True),
    "completion": ("0200", "000000", "20", "06", True),
    "completion_void": ("0200", "200000", "21", "06", True),
    "offline_sale": ("0220", "000000", "30", "00", False),
    "adjust": ("0220", "000000", "34", "00", False),
}

KINDS: tuple[str, ...] = tuple(_CUP)


def layout(kind: str, family: str) -> Layout:
    """The wire layout of a transaction kind.

    Raises:
        ValueError: unknown kind or family.
    """
    if family == "cup" and kind in _CUP:
        mti, proc, cup_type, cond, rev = _CUP[kind]
        return Layout(kind=kind, mti=mti, processing_code=proc, cup_type=cup_type, condition=cond, reversible=rev)
    if family == "intl" and kind in _INTL:
        mti, proc, cond, rev = _INTL[kind]
        return Layout(kind=kind, mti=mti, processing_code=proc, cup_type=None, condition=cond, reversible=rev)
    raise ValueError(f"Unknown transaction kind {kind!r} for family {family!r}, expecting one of "
                     f"{', '.join(KINDS)} and family intl or cup")


def identify(message: Mapping[str, str], family: str) -> str | None:
    """The transaction kind of a financial request (or of the original a reversal/upload names).

    Returns None for network management, settlement, upload and unknown requests.  For a reversal
    (04xx) pass the message: the kind of the original is returned.
    """
    mti: str | None = message.get("t", "")
    if mti is not None and mti[:2] == "04":
        mti = None  # a reversal: match on processing code (and 60.1) only
    proc = message.get("3", "")
    if family == "cup":
        cup_type = message.get("60", "")[:2]
        for kind, (k_mti, k_proc, k_type, _, reversible) in _CUP.items():
            if k_type == cup_type and k_proc == proc and (_same_class(mti, k_mti) if mti else reversible):
                return kind
        return None
    candidates = [k for k, (k_mti, k_proc, _, reversible) in _INTL.items()
                  if k_proc == proc and (_same_class(mti, k_mti) if mti else reversible)]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if set(candidates) == {"completion", "offline_sale"}:
        return "completion" if "37" in message else "offline_sale"
    if set(candidates) == {"void", "completion_void"}:
        return "completion_void" if message.get("25") == "06" else "void"
    return candidates[0]


def kind_of_cup_type(cup_type: str) -> str | None:
    """The transaction kind a CUP 60.1 names (60.1 alone tells them apart), or None.

    >>> kind_of_cup_type("25"), kind_of_cup_type("99")
    ('refund', None)
    """
    return next((kind for kind, (_, _, k_type, _, _) in _CUP.items() if k_type == cup_type), None)


def _same_class(mti: str, layout_mti: str) -> bool:
    """0221 (repeat) is the same message class as 0220."""
    return mti[:3] == layout_mti[:3]
