"""specs.tlv: field 55 decoded and encoded against literal BER-TLV bytes, and its error texts.

The field-55 strings below were composed for these tests, object by object, following EMV 4.3
Book 3 Annex B (tag, length, value) and the tag list of Book 3 Annex A; they are not a capture
from a real card.  Values are test values (AID A000000333010101 is UnionPay debit).
"""

from __future__ import annotations

import pickle

import pytest

from specs.codec import decode, encode
from specs.dialects import get_dialect
from specs.tlv import TlvError, decode_icc, encode_icc

# A 0200 ARQC request, one data object per line.
REQUEST_55 = bytes.fromhex(
    "9F2608" "1122334455667788"    # application cryptogram (ARQC)
    "9F2701" "80"                  # cryptogram information data: ARQC
    "9F1007" "06010A03A00000"      # issuer application data
    "9F3704" "9BADBCAB"            # unpredictable number
    "9F3602" "0041"                # application transaction counter
    "9505" "8000048000"            # terminal verification results
    "9A03" "251122"                # transaction date YYMMDD
    "9C01" "00"                    # transaction type: goods and services
    "9F0206" "000000001234"        # amount, authorised
    "5F2A02" "0156"                # transaction currency code: CNY
    "8202" "7C00"                  # application interchange profile
    "9F1A02" "0156"                # terminal country code: China
    "9F0306" "000000000000"        # amount, other
    "9F3303" "E0E1C8"              # terminal capabilities
    "9F3403" "420300"              # CVM results: online PIN
    "9F3501" "22"                  # terminal type
    "9F1E08" "3132333435363738"    # IFD serial number "12345678"
    "8408" "A000000333010101"      # dedicated file name (AID)
    "9F0902" "0020"                # application version number
    "9F4104" "00000002"            # transaction sequence counter
)

REQUEST_TAGS = {
    "9F26": bytes.fromhex("1122334455667788"), "9F27": b"\x80", "9F10": bytes.fromhex("06010A03A00000"),
    "9F37": bytes.fromhex("9BADBCAB"), "9F36": bytes.fromhex("0041"), "95": bytes.fromhex("8000048000"),
    "9A": bytes.fromhex("251122"), "9C": b"\x00", "9F02": bytes.fromhex("000000001234"),
    "5F2A": bytes.fromhex("0156"), "82": bytes.fromhex("7C00"), "9F1A": bytes.fromhex("0156"),
    "9F03": bytes(6), "9F33": bytes.fromhex("E0E1C8"), "9F34": bytes.fromhex("420300"), "9F35": b"\x22",
    "9F1E": b"12345678", "84": bytes.fromhex("A000000333010101"), "9F09": bytes.fromhex("0020"),
    "9F41": bytes.fromhex("00000002"),
}

# A 0210 answer: issuer authentication data, then issuer script template 2 (constructed, tag 72).
RESPONSE_55 = bytes.fromhex(
    "910A" "0102030405060708" "3030"    # ARPC + authorisation response code "00"
    "7212"                               # issuer script template 2, 18 bytes:
    "9F1804" "00000001"                  #   issuer script identifier
    "8609" "842400000411223344"          #   issuer script command
)


def test_decode_a_request_field_55() -> None:
    decoded = decode_icc(REQUEST_55)
    assert decoded == REQUEST_TAGS
    assert list(decoded) == list(REQUEST_TAGS)  # wire order kept


def test_encode_a_request_field_55() -> None:
    assert encode_icc(REQUEST_TAGS) == REQUEST_55
    assert encode_icc({tag: value.hex() for tag, value in REQUEST_TAGS.items()}) == REQUEST_55


def test_decode_accepts_the_hex_string_the_codec_gives() -> None:
    assert decode_icc(REQUEST_55.hex().upper()) == decode_icc(REQUEST_55.hex()) == REQUEST_TAGS


def test_constructed_template_keeps_its_raw_contents() -> None:
    decoded = decode_icc(RESPONSE_55)
    assert decoded == {"91": bytes.fromhex("0102030405060708") + b"00",
                       "72": bytes.fromhex("9F180400000001" "8609842400000411223344")}
    assert decode_icc(decoded["72"]) == {"9F18": bytes.fromhex("00000001"),
                                         "86": bytes.fromhex("842400000411223344")}
    assert encode_icc(decoded) == RESPONSE_55


def test_long_form_length_round_trip() -> None:
    value = bytes(range(130))
    wire = bytes.fromhex("DF0181" "82") + value  # 130 > 127: length 81 82
    assert encode_icc({"DF01": value}) == wire
    assert decode_icc(wire) == {"DF01": value}


def test_field_55_through_the_cup_codec() -> None:
    cup = get_dialect("cup")
    sale = {"t": "0200", "3": "000000", "4": "000000001234", "11": "000002", "22": "051", "25": "00",
            "41": "10000001", "42": "123456789012345", "49": "156", "55": encode_icc(REQUEST_TAGS).hex(),
            "60": "22000001"}
    assert decode_icc(decode(encode(sale, cup), cup)["55"]) == REQUEST_TAGS


def test_empty_field_55() -> None:
    assert decode_icc(b"") == {} and encode_icc({}) == b""


def test_truncated_value_error_text() -> None:
    truncated = REQUEST_55[:-2]  # 9F41 says 4 bytes, 2 remain
    with pytest.raises(TlvError, match=r"^Tag value malformed, expecting 4 byte\(s\), found 2 byte\(s\) left "
                                       r"in the data: tag 9F41 offset 129$") as info:
        decode_icc(truncated)
    assert (info.value.tag, info.value.offset) == ("9F41", 129)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_truncated_tag_and_length_error_texts() -> None:
    with pytest.raises(TlvError, match=r"^Tag malformed, expecting more data, found 1 byte\(s\) left in the data: "
                                       r"tag 9F offset 0$"):
        decode_icc(b"\x9f")
    with pytest.raises(TlvError, match=r"^Tag length malformed, expecting 1 byte\(s\), found 0 byte\(s\) left "
                                       r"in the data: tag 9F27 offset 3$"):
        decode_icc(bytes.fromhex("9F2781"))


def test_malformed_hex_error_texts() -> None:
    with pytest.raises(TlvError, match=r"^ICC data holds 'G', expecting hex digits only: tag \? offset 3$"):
        decode_icc("9F2G0180")
    with pytest.raises(TlvError, match=r"^ICC data is 5 hex digits, expecting an even number: tag \? offset 5$"):
        decode_icc("9F270")


def test_a_repeated_tag_is_rejected_not_merged() -> None:
    with pytest.raises(TlvError, match=r"^Tag 9F27 does not re-encode to the bytes received, expecting every tag "
                                       r"once per template and lengths in shortest form: tag 9F27 offset 0$"):
        decode_icc(bytes.fromhex("9F2701" "80" "9F2701" "40"))


def test_a_non_minimal_length_is_rejected() -> None:
    with pytest.raises(TlvError, match=r"^Tag 9C does not re-encode .*: tag 9C offset 4$"):
        decode_icc(bytes.fromhex("9F2701" "80" "9C8101" "00"))  # 9C length 81 01 instead of 01


def test_encode_error_texts() -> None:
    with pytest.raises(TlvError, match=r"^Invalid tag format, expecting more data: tag 9F offset 4$"):
        encode_icc({"9F27": b"\x80", "9F": b"\x01"})
    with pytest.raises(TlvError, match=r"^Value of tag 9F02 is not hex, expecting bytes or a hex string: "
                                       r"tag 9F02 offset 0$"):
        encode_icc({"9F02": "00000000123G"})
    with pytest.raises(TlvError, match=r"^Contents of constructed tag 72 are not TLV \(Tag value malformed, "
                                       r"expecting 4 byte\(s\) at tag 9F18 offset 3 inside it\), expecting nested "
                                       r"data objects: tag 72 offset 0$"):
        encode_icc({"72": bytes.fromhex("9F180400")})


def test_a_template_repeating_a_tag_is_rejected_not_merged() -> None:
    two_commands = bytes.fromhex("7212" "8607" "84240000021122" "8607" "84240000023344")
    with pytest.raises(TlvError, match=r"^Tag 72 does not re-encode to the bytes received, .*: tag 72 offset 0$"):
        decode_icc(two_commands)
