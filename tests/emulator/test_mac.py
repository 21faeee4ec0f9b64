"""MACs on the wire: the shell's field 64 against published ANSI X9.19 vectors and a CUP ECB MAC
worked by hand here, with single DES steps from ``cryptography`` (not from the code under test)."""

from __future__ import annotations

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from emulator.messages import Profile, financial_request, repeat_mti
from specs.codec import encode
from specs.crypto import sign
from specs.dialects import get_dialect
from tests.emulator.helpers import NOW

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # the ANSI X9.19 / ISO 9797-1 example key


def des_encrypt(key8: bytes, block: bytes) -> bytes:
    encryptor = Cipher(TripleDES(key8 * 3), modes.ECB()).encryptor()  # K|K|K is single DES
    return encryptor.update(block) + encryptor.finalize()


def des_decrypt(key8: bytes, block: bytes) -> bytes:
    decryptor = Cipher(TripleDES(key8 * 3), modes.ECB()).decryptor()
    return decryptor.update(block) + decryptor.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def x919_by_hand(key16: bytes, data: bytes) -> bytes:
    """ANSI X9.19: CBC single DES under K over the zero-padded data, then D(K'), E(K) on the last block."""
    left, right = key16[:8], key16[8:]
    data += bytes(-len(data) % 8)
    chain = bytes(8)
    for i in range(0, len(data), 8):
        chain = des_encrypt(left, xor(chain, data[i:i + 8]))
    return des_encrypt(left, des_decrypt(right, chain))


def cup_ecb_by_hand(mak8: bytes, data: bytes) -> bytes:
    """银联ECB, the five steps of docs/domain.md#keys-and-mac, with a single-length MAK."""
    data += bytes(-len(data) % 8)
    result = bytes(8)
    for i in range(0, len(data), 8):
        result = xor(result, data[i:i + 8])
    expanded = result.hex().upper().encode("ascii")
    first = des_encrypt(mak8, expanded[:8])
    second = des_encrypt(mak8, xor(first, expanded[8:]))
    return second.hex().upper().encode("ascii")[:8]


def test_published_x919_vectors() -> None:
    assert x919_by_hand(KEY, b"Now is the time for all ").hex().upper() == "A1C72E74EA3FA9B6"
    assert x919_by_hand(KEY, b"Now is the time for it").hex().upper() == "2E2B1428CC78254F"


def test_cup_ecb_worked_example() -> None:
    """MAB "0200" with MAK 0123456789ABCDEF: result block 30323030 00000000, expanded
    "3032303000000000", E("30323030"), XOR "00000000", E again, first 8 hex characters."""
    mak = bytes.fromhex("0123456789ABCDEF")
    result_block = xor(b"0200\x00\x00\x00\x00", bytes(8))
    assert result_block.hex().upper() == "3032303000000000"
    assert cup_ecb_by_hand(mak, b"0200") == b"9C277DBC"


def _sale(family: str) -> dict[str, str]:
    return financial_request(Profile(family=family), "sale", stan="000002", batch="000001", now=NOW,
                             amount_minor=1234, pan="4761739001010010", expiry="3012", invoice="000001")


def test_the_shell_puts_the_x919_mac_of_the_mab_in_field_64() -> None:
    dialect = get_dialect("intl-bcd")
    signed = sign(_sale("intl"), dialect, KEY, "x9.19")
    wire = encode(signed, dialect)
    mab = wire[:-8]  # MTI .. last field before 64, bitmap with bit 64 set
    assert signed["64"] == x919_by_hand(KEY, mab).hex().upper()


def test_the_shell_puts_the_cup_ecb_mac_of_the_mab_in_field_64() -> None:
    dialect = get_dialect("cup")
    mak = bytes.fromhex("0123456789ABCDEF")
    signed = sign(_sale("cup"), dialect, mak, "cup-ecb")
    mab = encode(signed, dialect)[:-8]
    assert bytes.fromhex(signed["64"]) == cup_ecb_by_hand(mak, mab)


def test_a_repeat_advice_is_encoded_and_maced_over_its_own_mti() -> None:
    dialect = get_dialect("intl-bcd")
    advice = financial_request(Profile(family="intl"), "offline_sale", stan="000003", batch="000001", now=NOW,
                               amount_minor=500, pan="4761739001010010", expiry="3012", invoice="000002",
                               auth_code="Y00003")
    repeat = {**advice, "t": repeat_mti(advice["t"])}
    signed = sign(repeat, dialect, KEY, "x9.19")
    wire = encode(signed, dialect)
    assert wire[:2] == bytes.fromhex("0221")
    assert signed["64"] == x919_by_hand(KEY, wire[:-8]).hex().upper()
