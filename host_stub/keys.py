"""Working keys, MACs and PIN blocks as the host uses them (on top of :mod:`specs.crypto`).

Wire contract (shared with the terminal):

* sign-on derives fresh working keys per terminal per sign-on:
  ``derive_test_key(f"{tid}:{signon_count}:{name}", key_length)`` for name PIK, MAK(, TDK);
* the 0810 field 62 is ``build_key_block(TMK, [PIK, MAK(, TDK)])``: CUP picks the layout from
  60.3 (001/003/004, :data:`specs.crypto.KEY_BLOCK_LAYOUT`), INTL always uses 003; in the decoded
  dict the block is upper-case hex either way (CUP field 62 is binary, INTL field 62 is hex text);
* MAC algorithm: :func:`specs.crypto.default_mac_algorithm` of the dialect family.
"""

from __future__ import annotations

from specs.codec import Message
from specs.crypto import (
    DEFAULT_TEST_TMK,
    KEY_BLOCK_LAYOUT,
    build_key_block,
    default_mac_algorithm,
    derive_test_key,
    read_pin_block,
    sign,
    verify,
)
from specs.dialects import Dialect

#: Key names in key-block order.
KEY_NAMES = ("PIK", "MAK", "TDK")
#: The layout INTL sign-on always uses (double-length PIK + MAK).
INTL_KEY_LAYOUT = "003"


def tmk_of(tmk_hex: str | None) -> bytes:
    """The terminal master key: the registry's, or the shared test TMK."""
    return bytes.fromhex(tmk_hex) if tmk_hex else DEFAULT_TEST_TMK


def issue_working_keys(*, tid: str, signon_count: int, layout: str, tmk_hex: str | None) -> tuple[dict[str, str], str]:
    """Fresh working keys for one sign-on and the field-62 key block carrying them.

    Args:
        tid: the terminal.
        signon_count: this sign-on's number (1 for the first).
        layout: CUP 60.3 (001, 003, 004); INTL passes :data:`INTL_KEY_LAYOUT`.
        tmk_hex: the terminal's TMK (hex), None for the test TMK.

    Returns:
        ``({"PIK": hex, "MAK": hex[, "TDK": hex]}, field 62 as upper-case hex)``.

    Raises:
        ValueError: an unknown layout.
    """
    if layout not in KEY_BLOCK_LAYOUT:
        raise ValueError(f"Key layout {layout!r}, expecting one of {', '.join(KEY_BLOCK_LAYOUT)}")
    length, count = KEY_BLOCK_LAYOUT[layout]
    keys = {name: derive_test_key(f"{tid}:{signon_count}:{name}", length) for name in KEY_NAMES[:count]}
    block = build_key_block(tmk_of(tmk_hex), list(keys.values()))
    return {name: key.hex().upper() for name, key in keys.items()}, block.hex().upper()


def mac_is_valid(message: Message, dialect: Dialect, mak_hex: str) -> bool:
    """Whether field 64 of a received message is right under the MAK (False, never raises, on bad input).

    Repeats (0221, 0401) are MACed over their own bytes, MTI included, like any other message.
    """
    return verify(message, dialect, bytes.fromhex(mak_hex), default_mac_algorithm(dialect.family))


def signed(message: Message, dialect: Dialect, mak_hex: str) -> Message:
    """A copy of ``message`` with field 64 computed under the MAK."""
    return sign(message, dialect, bytes.fromhex(mak_hex), default_mac_algorithm(dialect.family))


def pin_from_block(block_hex: str, pan: str, pik_hex: str) -> str:
    """The clear PIN of field 52.

    Raises:
        ValueError: the block does not decode under this PIK and PAN (the text never holds the PIN).
    """
    return read_pin_block(bytes.fromhex(block_hex), pan, bytes.fromhex(pik_hex))
