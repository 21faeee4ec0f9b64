"""Seeded, Luhn-valid test cards (Faker), shared by the terminal's defaults and the host's registry.

>>> card = seeded_card(seed=1, scheme="unionpay")
>>> card.pan.startswith("62"), len(card.pan), luhn_valid(card.pan)
(True, 16, True)
>>> seeded_card(seed=1) == seeded_card(seed=1)
True
"""

from __future__ import annotations

from dataclasses import dataclass

from faker import Faker

from specs.masking import luhn_valid

#: Scheme -> (Faker card type, or None for a BIN prefix we complete ourselves).
SCHEMES: dict[str, str] = {"visa": "visa16", "mastercard": "mastercard", "unionpay": "62"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Card:
    """A manually entered card, checked when made: nothing the terminal stores or sends can carry
    a PAN or expiry the message layout would refuse later.

    >>> Card(pan="4761739001010010", expiry="2912").expiry
    '2912'
    >>> Card(pan="4761739001010010", expiry="99")
    Traceback (most recent call last):
    ValueError: card expiry is 2 characters, expecting 4 digits YYMM with a month 01-12
    >>> Card(pan="47617390x1010010", expiry="2912")
    Traceback (most recent call last):
    ValueError: card number is 16 characters with a non-digit, expecting 12 to 19 digits
    """

    pan: str
    expiry: str  # YYMM

    def __post_init__(self) -> None:
        pan, expiry = self.pan, self.expiry
        if not (12 <= len(pan) <= 19 and pan.isascii() and pan.isdigit()):  # never repeat the PAN itself
            problem = " with a non-digit" if not (pan.isascii() and pan.isdigit()) else ""
            raise ValueError(f"card number is {len(pan)} characters{problem}, expecting 12 to 19 digits")
        if not (len(expiry) == 4 and expiry.isascii() and expiry.isdigit() and 1 <= int(expiry[2:]) <= 12):
            shown = f"{len(expiry)} characters" if len(expiry) != 4 else repr(expiry)
            raise ValueError(f"card expiry is {shown}, expecting 4 digits YYMM with a month 01-12")


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` Luhn-valid."""
    return next(d for d in "0123456789" if luhn_valid(body + d))


def seeded_card(*, seed: int, scheme: str = "visa") -> Card:
    """A deterministic test card for ``seed``: same seed, same card.

    Raises:
        ValueError: unknown scheme.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown card scheme {scheme!r}, expecting one of {', '.join(sorted(SCHEMES))}")
    fake = Faker()
    fake.seed_instance(seed)
    kind = SCHEMES[scheme]
    if kind.isdigit():  # a BIN prefix Faker does not know (UnionPay 62)
        body = kind + fake.numerify("#" * (15 - len(kind)))
        pan = body + luhn_check_digit(body)
    else:
        pan = fake.credit_card_number(card_type=kind)
    return Card(pan=pan, expiry=f"{fake.random_int(30, 39):02d}{fake.random_int(1, 12):02d}")
