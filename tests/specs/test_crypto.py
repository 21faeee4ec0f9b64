"""specs.crypto against published vectors and against hand computations with the raw cipher.

The independent computations use cryptography's TripleDES directly (24-byte keys: K|K|K is single
DES, K1|K2|K1 two-key TDES), never specs.crypto or psec, so a shared mistake cannot pass both.
"""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from specs.codec import CodecError
from specs.crypto import (
    DEFAULT_TEST_TMK,
    KEY_BLOCK_LAYOUT,
    MAC_ALGORITHMS,
    KeyCheckError,
    build_key_block,
    cup_ecb_mac,
    decrypt_key,
    default_mac_algorithm,
    derive_test_key,
    encrypt_key,
    kcv,
    mac_data,
    parse_key_block,
    pin_block,
    read_pin_block,
    retail_mac,
    sign,
    verify,
)
from specs.dialects import get_dialect


def des_ecb(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """Reference single DES (8-byte key) or two-key TDES (16-byte key), straight from cryptography."""
    full = key * 3 if len(key) == 8 else key + key[:8]
    cipher = Cipher(TripleDES(full), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(block) + op.finalize()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------ ANSI X9.19 retail MAC

# ISO/IEC 9797-1 Annex B examples for MAC algorithm 3 (= ANSI X9.19), padding method 1, with
# K = 0123456789ABCDEF and K' = FEDCBA9876543210; quoted as "test from ISO/IEC 9797-1:2011
# section B.4" in RustCrypto/MACs retail-mac/src/lib.rs (doc test of RetailMac<Des>).
X919_VECTORS = [
    (b"Now is the time for all ", "A1C72E74EA3FA9B6"),
    (b"Now is the time for it", "2E2B1428CC78254F"),
]


@pytest.mark.parametrize(("data", "mac_hex"), X919_VECTORS)
def test_retail_mac_matches_iso_9797_1_annex_b(data: bytes, mac_hex: str) -> None:
    assert retail_mac(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), data).hex().upper() == mac_hex


def test_retail_mac_zero_pads_the_last_block() -> None:
    key = DEFAULT_TEST_TMK
    assert retail_mac(key, b"Now is the time for it") == retail_mac(key, b"Now is the time for it\x00\x00")


def test_retail_mac_rejects_a_single_length_key() -> None:
    with pytest.raises(ValueError, match=r"^X9\.19 MAC key is 8 bytes, expecting 16 \(double-length K\|K'\)$"):
        retail_mac(bytes(8), b"data")


# -------------------------------------------------------------------------- key check values


def test_kcv_of_the_double_length_test_key() -> None:
    # psec documents generate_kcv(0123456789ABCDEFFEDCBA9876543210) == 08D7 (2 bytes, its doctest);
    # CUP sends 4 bytes, and E(K, 0^8) computed with the raw cipher is 08D7B4FB629D0885.
    assert des_ecb(DEFAULT_TEST_TMK, bytes(8)).hex().upper() == "08D7B4FB629D0885"
    assert kcv(DEFAULT_TEST_TMK).hex().upper() == "08D7B4FB"


def test_kcv_of_a_single_length_key() -> None:
    # OpenSSL's DES test vectors (test/destest.c; mbedTLS test_suite_des.data "DES Encrypt OpenSSL
    # Test Vector"): key 0123456789ABCDEF, plaintext 0000000000000000 -> D5D44FF720683D0D.
    assert kcv(bytes.fromhex("0123456789ABCDEF")).hex().upper() == "D5D44FF7"


def test_kcv_rejects_a_key_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"^Key is 12 bytes, expecting 8 \(single DES\), 16 or 24 \(TDES\)$"):
        kcv(bytes(12))


# ------------------------------------------------------------------------- CUP ECB MAC by hand

# A published worked example of the CUP ECB MAC with a double-length TAK, every intermediate value
# printed: https://blog.csdn.net/zfr_xuexiao66/article/details/94665452 ("银联标准8583MAC计算简介").
CSDN_TAK = bytes.fromhex("55036372B17543ECB173730768B8D6C4")
CSDN_MAB = bytes.fromhex(
    "08300000000002C000153030363730303436343238393733373031373933323330303200110000000137200277"
    "319F0605A0000003339F220103DF050832303234313233319F0605A0000003339F220104DF050832303234313233"
    "319F0605A0000003339F220102DF050832303231313233319F0605A0000000039F220107DF050832303137313233"
    "319F0605A0000000039F220108DF050832303233313233319F0605A0000000039F220109DF050832303233313233"
    "319F0605A0000000659F220110DF050832303232313233319F0605A0000000659F220112DF050832303232313233"
    "319F0605A0000000659F220114DF050832303232313233319F0605A0000000049F220104DF050832303137313233"
    "319F0605A0000000049F220105DF050832303231313233319F0605A0000000049F220106DF05083230323131323331")


def test_cup_ecb_mac_published_example_step_by_step() -> None:
    padded = CSDN_MAB + bytes(-len(CSDN_MAB) % 8)                        # 1. zero pad to 8
    result = bytes(8)
    for start in range(0, len(padded), 8):                               # 2. XOR all blocks
        result = xor(result, padded[start:start + 8])
    assert result.hex().upper() == "1212B04E1227809C"
    expanded = result.hex().upper().encode("ascii")                      # 3. 16 ASCII chars
    assert expanded.hex().upper() == "31323132423034453132323738303943"
    first = des_ecb(CSDN_TAK, expanded[:8])                              #    E(first 8)
    assert first.hex().upper() == "8B29461A844BA5EC"
    second_input = xor(first, expanded[8:])                              # 4. XOR last 8,
    assert second_input.hex().upper() == "BA1B742DBC7B9CAF"
    second = des_ecb(CSDN_TAK, second_input)                             #    E again
    assert second.hex().upper() == "5FE058DB90680D33"
    mac = second.hex().upper().encode("ascii")[:8]                       # 5. first 8 hex chars
    assert mac.hex().upper() == "3546453035384442"                       # field 64 in the source

    assert cup_ecb_mac(CSDN_TAK, CSDN_MAB) == mac == b"5FE058DB"


def test_cup_ecb_mac_single_des_by_hand_over_a_literal_mab() -> None:
    # The MAB of the CUP 0200 sale pinned in test_mac_data_of_a_cup_sale_is_mti_to_field_60.
    mab = bytes.fromhex("02003020048000C080110000000000000012340000020022003130303030303031"
                        "313233343536373839303132333435313536000822000001")
    mak = bytes.fromhex("0123456789ABCDEF")
    blocks = [bytes.fromhex(h) for h in ("02003020048000C0", "8011000000000000", "0012340000020022",
                                         "0031303030303030", "3131323334353637", "3839303132333435",
                                         "3135360008220000", "0100000000000000")]  # 57 bytes + 7 zeros
    assert b"".join(blocks) == mab + bytes(7)
    result = bytes(8)
    for block in blocks:
        result = xor(result, block)
    expanded = result.hex().upper().encode("ascii")
    second = des_ecb(mak, xor(des_ecb(mak, expanded[:8]), expanded[8:]))
    expected = second.hex().upper().encode("ascii")[:8]

    assert cup_ecb_mac(mak, mab) == expected


def test_cup_ecb_mac_rejects_a_triple_length_key() -> None:
    with pytest.raises(ValueError, match=r"^CUP ECB MAC key is 24 bytes, expecting 8 \(DES\) or 16 \(3DES\)$"):
        cup_ecb_mac(bytes(24), b"data")


# ---------------------------------------------------------------------- MAB, sign and verify

CUP_SALE = {"t": "0200", "3": "000000", "4": "000000001234", "11": "000002", "22": "022", "25": "00",
            "41": "10000001", "42": "123456789012345", "49": "156", "60": "22000001"}
INTL_SALE = {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001234", "11": "000002",
             "14": "2512", "22": "012", "24": "112", "25": "00", "41": "10000001", "42": "123456789012345",
             "62": "000001"}
SALES = {"intl-ascii": INTL_SALE, "intl-bcd": INTL_SALE, "cup": CUP_SALE}


def test_mac_data_of_a_cup_sale_is_mti_to_field_60() -> None:
    assert mac_data(CUP_SALE, get_dialect("cup")) == (
        b"\x02\x00"
        b"\x30\x20\x04\x80\x00\xC0\x80\x11"  # bits 3 4 | 11 | 22 | 25 | 41 42 | 49 | 60 64
        b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x02\x20" b"\x00"  # 22 left-aligned
        b"10000001" b"123456789012345" b"156" b"\x00\x08" b"\x22\x00\x00\x01")


def test_mac_data_of_intl_ascii_drops_the_16_hex_characters_of_field_64() -> None:
    assert mac_data(INTL_SALE, get_dialect("intl-ascii")) == (
        b"0200" b"7024058000C00005"  # bits 2 3 4 | 11 14 | 22 24 | 25 | 41 42 | 62 64
        b"16" b"4761739001010010" b"000000" b"000000001234" b"000002" b"2512" b"012" b"112" b"00"
        b"10000001" b"123456789012345" b"006" b"000001")


def test_mac_data_ignores_an_existing_field_64() -> None:
    cup = get_dialect("cup")
    assert mac_data({**CUP_SALE, "64": "FFFFFFFFFFFFFFFF"}, cup) == mac_data(CUP_SALE, cup)


def test_mac_data_refuses_fields_above_64() -> None:
    sign_on = {"t": "0800", "11": "000001", "24": "112", "41": "10000001", "70": "001"}
    with pytest.raises(ValueError, match=r"^Field 70 is present, expecting fields up to 64 only in a message "
                                         r"MACed in field 64 \(mti 0800\)$"):
        mac_data(sign_on, get_dialect("intl-bcd"))


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "intl-bcd", "cup"])
def test_sign_then_verify_round_trip(dialect_name: str) -> None:
    dialect = get_dialect(dialect_name)
    algorithm = default_mac_algorithm(dialect.family)
    mak = derive_test_key(f"MAK {dialect_name}")
    signed = sign(SALES[dialect_name], dialect, mak, algorithm)

    assert signed == {**SALES[dialect_name], "64": signed["64"]}
    assert len(signed["64"]) == 16 and signed["64"] == signed["64"].upper()
    assert verify(signed, dialect, mak, algorithm)
    assert verify({**signed, "64": signed["64"].lower()}, dialect, mak, algorithm)
    assert not verify({**signed, "4": "000000001235"}, dialect, mak, algorithm)
    assert not verify(SALES[dialect_name], dialect, mak, algorithm)  # no field 64
    assert not verify(signed, dialect, derive_test_key("another MAK"), algorithm)


def test_signed_cup_field_64_is_the_ascii_of_the_cup_ecb_mac() -> None:
    cup = get_dialect("cup")
    mak = bytes.fromhex("0123456789ABCDEF")
    signed = sign(CUP_SALE, cup, mak, "cup-ecb")
    assert bytes.fromhex(signed["64"]) == cup_ecb_mac(mak, mac_data(CUP_SALE, cup))
    assert all(ch in "0123456789ABCDEF" for ch in bytes.fromhex(signed["64"]).decode("ascii"))


def test_verify_is_false_for_a_message_the_mac_cannot_cover() -> None:
    dialect = get_dialect("intl-bcd")
    message = {"t": "0800", "11": "000001", "41": "10000001", "64": "0" * 16, "70": "001"}
    assert not verify(message, dialect, DEFAULT_TEST_TMK, "x9.19")


def test_sign_raises_on_local_misuse() -> None:
    cup = get_dialect("cup")
    with pytest.raises(ValueError, match=r"^Unknown MAC algorithm 'md5', expecting one of cup-ecb, x9\.19$"):
        sign(CUP_SALE, cup, DEFAULT_TEST_TMK, "md5")
    with pytest.raises(ValueError, match=r"^MAK is 8 bytes, expecting 16 for MAC algorithm x9\.19$"):
        verify(CUP_SALE, cup, bytes(8), "x9.19")
    with pytest.raises(CodecError, match=r"^Mandatory field 3 is missing from 0200"):
        sign({k: v for k, v in CUP_SALE.items() if k != "3"}, cup, DEFAULT_TEST_TMK, "cup-ecb")


def test_mac_algorithm_table_and_defaults() -> None:
    assert dict(MAC_ALGORITHMS) == {"x9.19": retail_mac, "cup-ecb": cup_ecb_mac}
    assert [default_mac_algorithm(f) for f in ("intl", "cup")] == ["x9.19", "cup-ecb"]
    with pytest.raises(ValueError, match=r"^Unknown dialect family 'visa', expecting one of cup, intl$"):
        default_mac_algorithm("visa")


# -------------------------------------------------------------------------- working keys


def test_decrypt_key_published_cup_example() -> None:
    # TMK 70F2A84CCBC2AE8625CBB0F2C22AB923, TAK under TMK 96D605EA176B7E9E, clear TAK
    # C24A8FB57AA20123: "MAC算法演示", https://blog.csdn.net/zhu244912654/article/details/80005341
    tmk = bytes.fromhex("70F2A84CCBC2AE8625CBB0F2C22AB923")
    assert decrypt_key(tmk, bytes.fromhex("96D605EA176B7E9E")).hex().upper() == "C24A8FB57AA20123"
    assert encrypt_key(tmk, bytes.fromhex("C24A8FB57AA20123")).hex().upper() == "96D605EA176B7E9E"


def test_encrypt_key_single_des_kek_is_fips_81_ecb() -> None:
    # FIPS PUB 81 Appendix B, ECB: key 0123456789ABCDEF, "Now is the time for all ".
    ciphertext = encrypt_key(bytes.fromhex("0123456789ABCDEF"), b"Now is the time for all ")
    assert ciphertext.hex().upper() == "3FA40E8A984D48156A271787AB8883F9893D51EC4B563B53"


def test_encrypt_key_rejects_a_key_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"^Working key is 12 bytes, expecting 8, 16 or 24$"):
        encrypt_key(DEFAULT_TEST_TMK, bytes(12))
    with pytest.raises(ValueError, match=r"^TMK is 7 bytes, expecting 8 \(single DES\), 16 or 24 \(TDES\)$"):
        decrypt_key(bytes(7), bytes(8))


def test_derive_test_key_is_deterministic_with_odd_parity() -> None:
    key = derive_test_key("MAK terminal 10000001")
    assert key == derive_test_key("MAK terminal 10000001") != derive_test_key("MAK terminal 10000002")
    assert key.hex().upper() == "AB85FB025867ABFED62A0E02EAF446A8"
    assert all(bin(byte).count("1") % 2 == 1 for byte in key)
    assert len(derive_test_key("x", 8)) == 8 and len(derive_test_key("x", 24)) == 24
    with pytest.raises(ValueError, match=r"^Key length is 12, expecting 8, 16 or 24$"):
        derive_test_key("x", 12)


# ---------------------------------------------------------------------- sign-on key blocks

PIK_16 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
MAK_16 = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
TDK_16 = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")


@pytest.mark.parametrize(("code", "total_bytes"), [("001", 24), ("003", 40), ("004", 60)])
def test_key_block_round_trip_per_sign_on_code(code: str, total_bytes: int) -> None:
    key_length, count = KEY_BLOCK_LAYOUT[code]
    keys = [derive_test_key(f"{name} {code}", key_length) for name in ("PIK", "MAK", "TDK")[:count]]
    block = build_key_block(DEFAULT_TEST_TMK, keys)

    assert len(block) == total_bytes
    entry = key_length + 4
    for index, key in enumerate(keys):  # layout: ciphertext under the TMK, then the 4-byte KCV
        assert block[index * entry:index * entry + key_length] == des_ecb(DEFAULT_TEST_TMK, key[:8]) + (
            des_ecb(DEFAULT_TEST_TMK, key[8:]) if key_length == 16 else b"")
        assert block[index * entry + key_length:(index + 1) * entry] == des_ecb(key, bytes(8))[:4]
    assert parse_key_block(DEFAULT_TEST_TMK, block, key_length) == keys


def test_key_block_with_a_tampered_mak_check_value() -> None:
    block = bytearray(build_key_block(DEFAULT_TEST_TMK, [PIK_16, MAK_16, TDK_16]))
    assert block[36:40] == bytes.fromhex("7B83586D")  # KCV of MAK_16
    block[36:40] = bytes.fromhex("1A2B3C4D")
    with pytest.raises(KeyCheckError, match=r"^MAK check value 1A2B3C4D, expecting 7B83586D: key block offset 20$") as info:
        parse_key_block(DEFAULT_TEST_TMK, bytes(block), 16)
    assert (info.value.name, info.value.offset) == ("MAK", 20)
    assert (info.value.received, info.value.computed) == (bytes.fromhex("1A2B3C4D"), bytes.fromhex("7B83586D"))
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_key_block_under_the_wrong_tmk_fails_on_the_first_key() -> None:
    block = build_key_block(derive_test_key("another TMK"), [PIK_16, MAK_16])
    with pytest.raises(KeyCheckError, match=r"^PIK check value 08D7B4FB, expecting [0-9A-F]{8}: key block offset 0$"):
        parse_key_block(DEFAULT_TEST_TMK, block, 16)


def test_key_block_length_errors() -> None:
    with pytest.raises(ValueError, match=r"^Key block is 39 bytes, expecting a non-zero multiple of 20 "
                                         r"\(16-byte key \+ 4-byte check value\)$"):
        parse_key_block(DEFAULT_TEST_TMK, bytes(39), 16)
    with pytest.raises(ValueError, match=r"^Key block is 0 bytes, expecting a non-zero multiple of 12"):
        parse_key_block(DEFAULT_TEST_TMK, b"", 8)
    with pytest.raises(ValueError, match=r"^Key block holds 4 keys, expecting at most 3 \(PIK, MAK, TDK\)$"):
        parse_key_block(DEFAULT_TEST_TMK, bytes(80), 16)


# --------------------------------------------------------------------------- PIN blocks

# ISO 9564 format 0 clear blocks.  Published: EFTlab "Complete list of PIN-blocks"
# (https://eftlab.com.au/knowledge-base/complete-list-of-pin-blocks, BP-Tools output): PIN 1234,
# PAN 43219876543210987 -> 0412AC89ABCDEF67.  psec's doctest: PIN 1234, PAN 5544332211009966 ->
# 041277CDDEEFF669.  Worked here: PIN field 041234FFFFFFFFFF XOR PAN field 0000198765432109
# (12 digits before the check digit of 4321987654321098) -> 04122D789ABCDEF6.
CLEAR_PIN_BLOCKS = [
    ("1234", "43219876543210987", "0412AC89ABCDEF67"),
    ("1234", "5544332211009966", "041277CDDEEFF669"),
    ("1234", "4321987654321098", "04122D789ABCDEF6"),
]


@pytest.mark.parametrize(("pin", "pan", "clear_hex"), CLEAR_PIN_BLOCKS)
def test_pin_block_is_format_0_under_the_pik(pin: str, pan: str, clear_hex: str) -> None:
    pik = PIK_16
    encrypted = pin_block(pin, pan, pik)
    assert des_ecb(pik, encrypted, decrypt=True).hex().upper() == clear_hex
    assert read_pin_block(encrypted, pan, pik) == pin


def test_pin_block_round_trip_with_a_single_length_pik_and_a_12_digit_pin() -> None:
    pik = derive_test_key("PIK", 8)
    assert read_pin_block(pin_block("123456789012", "6222021234567890123", pik), "6222021234567890123", pik) \
        == "123456789012"


def test_read_pin_block_with_the_wrong_pik_never_echoes_digits() -> None:
    block = pin_block("1234", "4761739001010010", PIK_16)
    with pytest.raises(ValueError, match=r"^PIN block does not decode as ISO 9564 format 0 under this PIK and PAN, "
                                         r"expecting control 0, PIN length 4-12, digits, then F filler$") as info:
        read_pin_block(block, "4761739001010010", MAK_16)
    assert info.value.__suppress_context__


def test_pin_block_input_errors_do_not_repeat_the_pin_or_pan() -> None:
    with pytest.raises(ValueError, match=r"^PIN is 3 characters, expecting 4 to 12 digits$"):
        pin_block("123", "4761739001010010", PIK_16)
    with pytest.raises(ValueError, match=r"^PIN is 4 characters, expecting 4 to 12 digits$"):
        pin_block("12a4", "4761739001010010", PIK_16)
    with pytest.raises(ValueError, match=r"^PAN is 12 characters, expecting 13 to 19 digits \(ISO 9564 format 0\)$"):
        pin_block("1234", "476173900101", PIK_16)
    with pytest.raises(ValueError, match=r"^PIN block is 7 bytes, expecting 8$"):
        read_pin_block(bytes(7), "4761739001010010", PIK_16)
