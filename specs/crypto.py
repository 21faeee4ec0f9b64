"""MACs, key check values, working-key blocks and PIN blocks, on top of ``psec``.

No DES is written here: every block operation is ``psec`` (``psec.des``, ``psec.mac``,
``psec.pinblock``), which runs on ``cryptography``.  This module adds what the terminal and the
stub host must agree on (docs/domain.md#f1, #keys-and-mac):

* two MAC algorithms over the MAC block (MAB = MTI .. last field before 64, :func:`mac_data`):
  ``"x9.19"`` — ANSI X9.19 retail MAC, ISO/IEC 9797-1 MAC algorithm 3 with padding method 1,
  the INTL default — and ``"cup-ecb"`` — the China UnionPay "银联ECB" MAC, the CUP default;
* the 4-byte key check value CUP sign-on uses (first 4 bytes of E(key, 8 zero bytes));
* the 0810 field-62 key block: each working key encrypted under the terminal master key (TMK),
  followed by its check value; a wrong check value is a :class:`KeyCheckError` and the terminal
  stays signed off;
* ISO 9564 format 0 PIN blocks, encrypted under the PIN key (PIK).

>>> retail_mac(DEFAULT_TEST_TMK, b"Now is the time for all ").hex().upper()
'A1C72E74EA3FA9B6'
>>> kcv(DEFAULT_TEST_TMK).hex().upper()
'08D7B4FB'
>>> from specs.dialects import get_dialect
>>> cup = get_dialect("cup")
>>> sale = {"t": "0200", "3": "000000", "4": "000000001234", "11": "000002", "22": "022",
...         "25": "00", "41": "10000001", "42": "123456789012345", "49": "156", "60": "22000001"}
>>> mak = derive_test_key("MAK terminal 10000001")
>>> signed = sign(sale, cup, mak, default_mac_algorithm(cup.family))
>>> len(signed["64"]), verify(signed, cup, mak, "cup-ecb")
(16, True)
>>> verify({**signed, "4": "000000009999"}, cup, mak, "cup-ecb")
False

Keys are ``bytes``: 8 bytes (single DES), 16 (double-length TDES K1|K2) or 24 (K1|K2|K3).
"""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType

import psec
from cryptography.utils import CryptographyDeprecationWarning

from specs.codec import encode
from specs.dialects import Dialect

#: A well-known *test* key (the ISO/IEC 9797-1 Annex B and psec example key), never a real one.
#: The stub host and the emulator use it as the default TMK so that traces can be checked by hand.
DEFAULT_TEST_TMK: bytes = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")

#: 0800/0810 field 60.3 (network management code) -> (key length in bytes, number of keys) in the
#: 0810 field-62 key block: 001 = single-length PIK+MAK (24 bytes), 003 = double-length PIK+MAK
#: (40 bytes), 004 = double-length PIK+MAK+TDK (60 bytes).  (docs/domain.md#f1, #keys-and-mac).
KEY_BLOCK_LAYOUT: Mapping[str, tuple[int, int]] = MappingProxyType({
    "001": (8, 2),
    "003": (16, 2),
    "004": (16, 3),
})

#: CUP sign-on carries 4 check-value bytes per key (PCI PIN 15-1 would allow at most 3).
KCV_LENGTH = 4

_DES_KEY_LENGTHS = (8, 16, 24)


@contextmanager
def _psec_calls() -> Iterator[None]:
    """Silence the one warning psec triggers on every call, and nothing else.

    psec 1.3.0 (the latest release) still reaches ``TripleDES`` through
    ``cryptography.hazmat.primitives.ciphers.algorithms``; cryptography >= 43 moved it to
    ``hazmat.decrepit`` and warns on each access, which ``filterwarnings = error`` turns into a
    failure.  The key-length deprecations (8- and 16-byte TripleDES keys) are *not* silenced: this
    module never triggers them, because :func:`_tdes_key` always hands psec 24-byte keys.
    ``catch_warnings`` swaps the process-wide filter list, so this is meant for the single-threaded
    cores (terminal, host), not for concurrent threads.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TripleDES has been moved",
                                category=CryptographyDeprecationWarning)
        yield


def _tdes_key(key: bytes, *, what: str) -> bytes:
    """The 24-byte TDES (EDE) key that computes the same cipher as ``key``.

    K|K|K is single DES, because E(K) D(K) E(K) = E(K); K1|K2|K1 is two-key TDES.  Expanding here
    keeps every key psec hands to cryptography 24 bytes long, the only length cryptography will
    keep accepting (8- and 16-byte TripleDES keys are deprecated since cryptography 46).
    """
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return bytes(key)
    raise ValueError(f"{what} is {len(key)} bytes, expecting 8 (single DES), 16 or 24 (TDES)")


def _ecb_encrypt(key: bytes, data: bytes, *, what: str) -> bytes:
    k = _tdes_key(key, what=what)
    with _psec_calls():
        return psec.des.encrypt_tdes_ecb(k, data)


def _ecb_decrypt(key: bytes, data: bytes, *, what: str) -> bytes:
    k = _tdes_key(key, what=what)
    with _psec_calls():
        return psec.des.decrypt_tdes_ecb(k, data)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------- MACs


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ANSI X9.19 retail MAC: ISO/IEC 9797-1 MAC algorithm 3, padding method 1 (zero pad).

    Every block is chained with single DES under the left key half K; the last block then gets
    D(K') and E(K) (psec ``generate_retail_mac``).  Empty data is MACed as one zero block.

    Args:
        key: the double-length MAK, K|K' (16 bytes).
        data: the MAB (:func:`mac_data`).

    Returns:
        The 8-byte MAC.

    Raises:
        ValueError: the key is not 16 bytes.

    >>> retail_mac(DEFAULT_TEST_TMK, b"Now is the time for it").hex().upper()
    '2E2B1428CC78254F'
    """
    if len(key) != 16:
        raise ValueError(f"X9.19 MAC key is {len(key)} bytes, expecting 16 (double-length K|K')")
    with _psec_calls():  # each half as K|K|K: single DES, see _tdes_key
        return psec.mac.generate_retail_mac(key[:8] * 3, key[8:] * 3, data, padding=1)


def cup_ecb_mac(key: bytes, data: bytes) -> bytes:
    """The CUP "银联ECB" MAC (docs/domain.md#keys-and-mac), step by step.

    1. right-pad the MAB with 0x00 to a multiple of 8;
    2. XOR all 8-byte blocks into one RESULT BLOCK;
    3. hex-expand it to 16 upper-case ASCII characters; encrypt the first 8 with the MAK;
    4. XOR that with the last 8 characters; encrypt again with the MAK;
    5. hex-expand, keep the first 8 characters: the MAC is those 8 ASCII bytes.

    With a single-length MAK the encryptions are DES, with a double-length MAK 3DES
    (``TDES_DOUBLE``).  Empty data is MACed as one zero block, like :func:`retail_mac`.

    Args:
        key: the MAK, 8 or 16 bytes.
        data: the MAB (:func:`mac_data`).

    Returns:
        The 8-byte MAC, which is always 8 upper-case hex characters in ASCII.

    Raises:
        ValueError: the key is not 8 or 16 bytes.

    >>> cup_ecb_mac(bytes.fromhex("0123456789ABCDEF"), b"0200")
    b'9C277DBC'
    """
    if len(key) not in (8, 16):
        raise ValueError(f"CUP ECB MAC key is {len(key)} bytes, expecting 8 (DES) or 16 (3DES)")
    padded = psec.mac.pad_iso_1(data, 8)
    result = bytes(8)
    for start in range(0, len(padded), 8):
        result = _xor(result, padded[start:start + 8])
    expanded = result.hex().upper().encode("ascii")
    first = _ecb_encrypt(key, expanded[:8], what="MAK")
    second = _ecb_encrypt(key, _xor(first, expanded[8:]), what="MAK")
    return second.hex().upper().encode("ascii")[:8]


#: MAC algorithm name -> function(key, MAB) -> 8-byte MAC.
MAC_ALGORITHMS: Mapping[str, Callable[[bytes, bytes], bytes]] = MappingProxyType({
    "x9.19": retail_mac,
    "cup-ecb": cup_ecb_mac,
})

_MAC_KEY_LENGTHS: Mapping[str, tuple[int, ...]] = MappingProxyType({"x9.19": (16,), "cup-ecb": (8, 16)})
_DEFAULT_MAC_ALGORITHM: Mapping[str, str] = MappingProxyType({"intl": "x9.19", "cup": "cup-ecb"})


def default_mac_algorithm(family: str) -> str:
    """The MAC algorithm a dialect family uses unless configured otherwise.

    >>> default_mac_algorithm("intl"), default_mac_algorithm("cup")
    ('x9.19', 'cup-ecb')

    Raises:
        ValueError: unknown family.
    """
    try:
        return _DEFAULT_MAC_ALGORITHM[family]
    except KeyError:
        raise ValueError(f"Unknown dialect family {family!r}, expecting one of "
                         f"{', '.join(sorted(_DEFAULT_MAC_ALGORITHM))}") from None


def _mac_function(algorithm: str, key: bytes) -> Callable[[bytes, bytes], bytes]:
    """Look the algorithm up and check the key length before any message work (local misuse)."""
    try:
        function = MAC_ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"Unknown MAC algorithm {algorithm!r}, expecting one of "
                         f"{', '.join(sorted(MAC_ALGORITHMS))}") from None
    lengths = _MAC_KEY_LENGTHS[algorithm]
    if len(key) not in lengths:
        raise ValueError(f"MAK is {len(key)} bytes, expecting {' or '.join(map(str, lengths))} "
                         f"for MAC algorithm {algorithm}")
    return function


def mac_data(message: Mapping[str, str], dialect: Dialect) -> bytes:
    """The MAC block (MAB): the encoded message from the MTI up to the last field before 64.

    The message is encoded with field 64 present (so bit 64 is set in the bitmap, as on the wire)
    and the encoded field 64 is cut off the end: 8 bytes in the BCD dialects, 16 hex characters
    in ``intl-ascii``.  Messages with fields above 64 would carry the MAC in field 128, which is
    not supported.

    Args:
        message: decoded message; any field 64 in it is ignored.
        dialect: the encoding dialect.

    Returns:
        The MAB bytes.

    Raises:
        ValueError: the message has a field above 64 (named in the text).
        specs.codec.CodecError: the message cannot be encoded (a ValueError too).
    """
    above = sorted((k for k in message if k.isdigit() and int(k) > 64), key=int)
    if above:
        raise ValueError(f"Field {above[0]} is present, expecting fields up to 64 only in a message "
                         f"MACed in field 64 (mti {message.get('t', '?')})")
    wire = encode({**message, "64": "0" * 16}, dialect)
    mac_field = dialect.spec["64"]
    assert mac_field["len_type"] == 0  # fixed length, no prefix: the MAC is the last max_len bytes
    return wire[:-int(mac_field["max_len"])]


def sign(message: Mapping[str, str], dialect: Dialect, key: bytes, algorithm: str) -> dict[str, str]:
    """A copy of ``message`` with field 64 set to its MAC (upper-case hex).

    Args:
        message: decoded message; an existing field 64 is replaced.
        dialect: the encoding dialect (the MAB is the encoded message).
        key: the MAK.
        algorithm: a key of :data:`MAC_ALGORITHMS`.

    Returns:
        The signed copy.

    Raises:
        ValueError: unknown algorithm, wrong key length, a field above 64, or a message the codec
        rejects.
    """
    function = _mac_function(algorithm, key)
    return {**message, "64": function(key, mac_data(message, dialect)).hex().upper()}


def verify(message: Mapping[str, str], dialect: Dialect, key: bytes, algorithm: str) -> bool:
    """Whether field 64 holds the right MAC for the rest of the message.

    A received message is remote input: a missing or wrong MAC, a field above 64 or a message the
    codec cannot encode all give False, never an exception.  The comparison is constant-time.

    Args:
        message: decoded message.
        dialect: the encoding dialect.
        key: the MAK.
        algorithm: a key of :data:`MAC_ALGORITHMS`.

    Returns:
        True when field 64 matches (hex case is ignored).

    Raises:
        ValueError: unknown algorithm or wrong key length (local misuse only).
    """
    function = _mac_function(algorithm, key)
    given = message.get("64")
    if not isinstance(given, str):
        return False
    try:
        expected = function(key, mac_data(message, dialect)).hex().upper()
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), given.upper().encode("utf-8", "replace"))


# ------------------------------------------------------------------------------------- keys


def kcv(key: bytes) -> bytes:
    """Key check value as CUP sign-on sends it: the first 4 bytes of E(key, 8 zero bytes).

    >>> kcv(bytes.fromhex("0123456789ABCDEF")).hex().upper()
    'D5D44FF7'

    Raises:
        ValueError: the key is not 8, 16 or 24 bytes.
    """
    k = _tdes_key(key, what="Key")
    with _psec_calls():
        return psec.des.generate_kcv(k, KCV_LENGTH)


def encrypt_key(kek: bytes, key: bytes) -> bytes:
    """A working key encrypted under a key-encryption key (the TMK), TDES-ECB.

    Args:
        kek: the terminal master key, 8, 16 or 24 bytes.
        key: the clear working key, 8, 16 or 24 bytes.

    Returns:
        The ciphertext, as long as ``key``.

    Raises:
        ValueError: a key of the wrong length.
    """
    if len(key) not in _DES_KEY_LENGTHS:
        raise ValueError(f"Working key is {len(key)} bytes, expecting 8, 16 or 24")
    return _ecb_encrypt(kek, key, what="TMK")


def decrypt_key(kek: bytes, encrypted: bytes) -> bytes:
    """The clear working key from its ciphertext under the TMK (inverse of :func:`encrypt_key`).

    >>> decrypt_key(DEFAULT_TEST_TMK, encrypt_key(DEFAULT_TEST_TMK, bytes(8))) == bytes(8)
    True

    Raises:
        ValueError: a key or ciphertext of the wrong length.
    """
    if len(encrypted) not in _DES_KEY_LENGTHS:
        raise ValueError(f"Encrypted working key is {len(encrypted)} bytes, expecting 8, 16 or 24")
    return _ecb_decrypt(kek, encrypted, what="TMK")


def derive_test_key(seed: str, length: int = 16) -> bytes:
    """A deterministic *test* working key: SHA-256 of the seed, truncated, odd parity set.

    The stub host uses it so that the same seed (e.g. ``"MAK " + TID``) always gives the same key
    and a failing scenario replays byte for byte.  Not a key-derivation scheme for real keys.

    >>> derive_test_key("MAK terminal 10000001").hex().upper()
    'AB85FB025867ABFED62A0E02EAF446A8'
    >>> derive_test_key("x", 8) == derive_test_key("x", 16)[:8]
    True

    Raises:
        ValueError: ``length`` is not 8, 16 or 24.
    """
    if length not in _DES_KEY_LENGTHS:
        raise ValueError(f"Key length is {length}, expecting 8, 16 or 24")
    return psec.des.adjust_key_parity(hashlib.sha256(seed.encode("utf-8")).digest()[:length])


class KeyCheckError(ValueError):
    """A key in a sign-on key block does not match its check value (wrong TMK, corrupt block).

    The text reads ``"MAK check value 1A2B3C4D, expecting 5E6F7081: key block offset 20"``: the
    check value *received* in the block, then the one *computed* from the decrypted key, then the
    offset of the key's entry in the block.

    Attributes:
        name: the key's name (``PIK``, ``MAK``, ``TDK``).
        offset: byte offset of the key's entry (ciphertext, then check value) in the block.
        received: the check value carried in the block.
        computed: the check value of the decrypted key.
    """

    def __init__(self, name: str, *, offset: int, received: bytes, computed: bytes) -> None:
        super().__init__(f"{name} check value {received.hex().upper()}, expecting "
                         f"{computed.hex().upper()}: key block offset {offset}")
        self.name = name
        self.offset = offset
        self.received = received
        self.computed = computed

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keep the keyword-only ctor picklable
        return _rebuild_key_check_error, (self.name, self.offset, self.received, self.computed)


def _rebuild_key_check_error(name: str, offset: int, received: bytes, computed: bytes) -> KeyCheckError:
    return KeyCheckError(name, offset=offset, received=received, computed=computed)


def build_key_block(tmk: bytes, keys: Sequence[bytes]) -> bytes:
    """The 0810 field-62 key block: for each key, its ciphertext under the TMK, then its 4-byte KCV.

    Args:
        tmk: the terminal master key.
        keys: clear working keys in block order (PIK, MAK[, TDK]), see :data:`KEY_BLOCK_LAYOUT`.

    Returns:
        The block, ``len(keys) * (key length + 4)`` bytes.

    Raises:
        ValueError: a key of the wrong length.
    """
    return b"".join(encrypt_key(tmk, key) + kcv(key) for key in keys)


def parse_key_block(tmk: bytes, block: bytes, key_length: int,
                    names: Sequence[str] = ("PIK", "MAK", "TDK")) -> list[bytes]:
    """Decrypt every key of a sign-on key block and check each against its check value.

    Args:
        tmk: the terminal master key.
        block: field 62 of the 0810.
        key_length: 8 or 16 (from :data:`KEY_BLOCK_LAYOUT` and 60.3); 24 is accepted too.
        names: key names in block order, for error messages.

    Returns:
        The clear keys, in block order.

    Raises:
        ValueError: the block length is not a non-zero multiple of ``key_length + 4``, or it holds
        more keys than ``names``.
        KeyCheckError: a key does not match its check value (a ValueError too).

    >>> keys = [bytes.fromhex("0123456789ABCDEF"), bytes.fromhex("FEDCBA9876543210")]
    >>> parse_key_block(DEFAULT_TEST_TMK, build_key_block(DEFAULT_TEST_TMK, keys), 8) == keys
    True
    >>> parse_key_block(DEFAULT_TEST_TMK, bytes(23), 8)
    Traceback (most recent call last):
    ...
    ValueError: Key block is 23 bytes, expecting a non-zero multiple of 12 (8-byte key + 4-byte check value)
    """
    if key_length not in _DES_KEY_LENGTHS:
        raise ValueError(f"Key length is {key_length}, expecting 8, 16 or 24")
    entry = key_length + KCV_LENGTH
    if not block or len(block) % entry:
        raise ValueError(f"Key block is {len(block)} bytes, expecting a non-zero multiple of {entry} "
                         f"({key_length}-byte key + {KCV_LENGTH}-byte check value)")
    count = len(block) // entry
    if count > len(names):
        raise ValueError(f"Key block holds {count} keys, expecting at most {len(names)} "
                         f"({', '.join(names)})")
    keys: list[bytes] = []
    for index in range(count):
        offset = index * entry
        key = decrypt_key(tmk, block[offset:offset + key_length])
        received = block[offset + key_length:offset + entry]
        computed = kcv(key)
        if not hmac.compare_digest(received, computed):
            raise KeyCheckError(names[index], offset=offset, received=received, computed=computed)
        keys.append(key)
    return keys


# -------------------------------------------------------------------------------- PIN blocks


def _check_pan(pan: str) -> None:
    # ISO 9564 format 0 takes the 12 rightmost PAN digits before the check digit: 13 at least.
    if not (13 <= len(pan) <= 19 and pan.isdigit() and pan.isascii()):
        raise ValueError(f"PAN is {len(pan)} characters, expecting 13 to 19 digits (ISO 9564 format 0)")


def check_pin(pin: str) -> str:
    """``pin`` when it is 4 to 12 digits (ISO 9564), else ValueError; the text never repeats the PIN.

    >>> check_pin("1234")
    '1234'
    >>> check_pin("12")
    Traceback (most recent call last):
    ValueError: PIN is 2 characters, expecting 4 to 12 digits
    """
    if not (4 <= len(pin) <= 12 and pin.isascii() and pin.isdigit()):
        raise ValueError(f"PIN is {len(pin)} characters, expecting 4 to 12 digits")
    return pin


def pin_block(pin: str, pan: str, pik: bytes) -> bytes:
    """An ISO 9564 format 0 PIN block for field 52, encrypted under the PIK with TDES-ECB.

    Args:
        pin: 4 to 12 digits.
        pan: the card number, 13 to 19 digits.
        pik: the PIN key, 8, 16 or 24 bytes.

    Returns:
        The 8-byte encrypted PIN block.

    Raises:
        ValueError: a PIN, PAN or key of the wrong form; the text never repeats the PIN or PAN.
    """
    check_pin(pin)
    _check_pan(pan)
    clear = psec.pinblock.encode_pinblock_iso_0(pin, pan)
    return _ecb_encrypt(pik, clear, what="PIK")


def read_pin_block(block: bytes, pan: str, pik: bytes) -> str:
    """The PIN from an encrypted ISO 9564 format 0 PIN block (inverse of :func:`pin_block`).

    >>> pik = derive_test_key("PIK terminal 10000001")
    >>> read_pin_block(pin_block("1234", "4761739001010010", pik), "4761739001010010", pik)
    '1234'

    Args:
        block: field 52, 8 bytes.
        pan: the card number the block was built with.
        pik: the PIN key.

    Returns:
        The clear PIN digits.

    Raises:
        ValueError: wrong lengths, or the block does not decode as format 0 under this PIK and PAN
        (wrong key or PAN, or a corrupt block).  The text never repeats PIN digits.
    """
    if len(block) != 8:
        raise ValueError(f"PIN block is {len(block)} bytes, expecting 8")
    _check_pan(pan)
    clear = _ecb_decrypt(pik, block, what="PIK")
    try:
        return psec.pinblock.decode_pinblock_iso_0(clear, pan)
    except ValueError:
        # psec's own text can quote the decoded PIN digits or filler: keep it out of logs.
        raise ValueError("PIN block does not decode as ISO 9564 format 0 under this PIK and PAN, "
                         "expecting control 0, PIN length 4-12, digits, then F filler") from None
