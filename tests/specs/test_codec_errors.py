"""Codec and framing rejections, each with its exact error text (what was found, expected, where)."""

from __future__ import annotations

import pytest

from specs.codec import CodecError, decode, encode
from specs.dialects import get_dialect
from specs.framing import FrameReader, Framing, FramingError

SALE_ASCII = (b"0200" b"7024058000C00004" b"16" b"4761739001010010" b"000000" b"000000001234" b"000002" b"2512"
              b"012" b"112" b"00" b"10000001" b"123456789012345" b"006" b"000001")
SALE_FIELDS = {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001234", "11": "000002",
               "14": "2512", "22": "012", "24": "112", "25": "00", "41": "10000001", "42": "123456789012345",
               "62": "000001"}
ALL_INTL_MTIS = ("0100, 0110, 0120, 0121, 0130, 0200, 0210, 0220, 0221, 0230, 0320, 0330, 0400, 0401, 0410, 0420, "
                 "0421, 0430, 0500, 0510, 0800, 0810, 0820, 0830")


def test_non_digit_amount_on_the_wire() -> None:
    wire = SALE_ASCII.replace(b"000000001234", b"0000000012A4")
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("intl-ascii"))
    assert str(exc_info.value) == "Field 4 holds '0000000012A4', expecting digits only (n 12): field 4 pos 44 mti 0200"
    assert (exc_info.value.field, exc_info.value.pos, exc_info.value.mti) == ("4", 44, "0200")


def test_non_digit_amount_in_bcd() -> None:
    wire = (b"\x02\x00" b"\x70\x24\x05\x80\x00\xC0\x00\x04" b"\x16\x47\x61\x73\x90\x01\x01\x00\x10"
            b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x3A"  # amount: nibble A is not a decimal digit
            b"\x00\x00\x02" b"\x25\x12" b"\x00\x12" b"\x01\x12" b"\x00" b"10000001" b"123456789012345"
            b"\x00\x06" b"000001")
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("intl-bcd"))
    assert str(exc_info.value) == "Field 4 holds '00000000123A', expecting digits only (n 12): field 4 pos 22 mti 0200"


def test_non_digit_amount_refused_before_sending() -> None:
    with pytest.raises(CodecError) as exc_info:
        encode({**SALE_FIELDS, "4": "12.34"}, get_dialect("intl-bcd"))
    assert str(exc_info.value) == "Field 4 holds '12.34', expecting digits only (n 12): field 4 pos 22 mti 0200"


def test_card_number_never_echoed_in_an_error() -> None:
    with pytest.raises(CodecError) as exc_info:
        encode({**SALE_FIELDS, "2": "47617390X1010010"}, get_dialect("intl-ascii"))
    assert str(exc_info.value) == "Field 2 holds 'X' at offset 8, expecting digits only (n ..19): field 2 pos 20 mti 0200"
    assert "4761739" not in str(exc_info.value)


def test_missing_mandatory_field() -> None:
    wire = (b"0200" b"7024058000400004" b"16" b"4761739001010010" b"000000" b"000000001234" b"000002" b"2512"
            b"012" b"112" b"00" b"123456789012345" b"006" b"000001")  # bit 41 cleared, TID removed
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("intl-ascii"))
    assert str(exc_info.value) == ("Mandatory field 41 is missing from 0200, expecting fields 3, 11, 22, 41, 42: "
                                   "field 41 pos 98 mti 0200")


def test_missing_mandatory_field_refused_before_sending() -> None:
    fields = {k: v for k, v in SALE_FIELDS.items() if k not in ("41", "42")}
    with pytest.raises(CodecError) as exc_info:
        encode(fields, get_dialect("intl-ascii"))
    assert str(exc_info.value) == ("Mandatory field 41 is missing from 0200 (also missing: 42), expecting fields "
                                   "3, 11, 22, 41, 42: field 41 pos ? mti 0200")


def test_truncated_message() -> None:
    with pytest.raises(CodecError) as exc_info:
        decode(SALE_ASCII[:-3], get_dialect("intl-ascii"))
    assert str(exc_info.value) == "Field data is 3 bytes, expecting 6: field 62 pos 100 mti 0200"


def test_truncated_frame() -> None:
    reader = FrameReader(Framing())
    assert reader.feed(b"\x00\x7f" + SALE_ASCII[:20]) == []
    with pytest.raises(FramingError) as exc_info:
        reader.close()
    assert str(exc_info.value) == "Frame truncated: declared 127 bytes, got 20 before the connection closed: pos 0"


def test_truncated_inside_length_prefix() -> None:
    reader = FrameReader(Framing(length_prefix="ascii4"))
    reader.feed(b"01")
    with pytest.raises(FramingError) as exc_info:
        reader.close()
    assert str(exc_info.value) == "Frame truncated inside its length prefix: got 2 of 4 bytes: pos 0"


def test_oversize_length_prefix() -> None:
    with pytest.raises(FramingError) as exc_info:
        FrameReader(Framing(max_frame_bytes=4096)).feed(b"\x23\x28" + b"0200")
    assert str(exc_info.value) == "Declared frame length 9000 exceeds the maximum 4096: pos 0"


def test_oversize_length_prefix_after_a_good_frame() -> None:
    """The position names where the bad frame starts in the stream."""
    good = b"\x00\x04" + b"0800"
    with pytest.raises(FramingError) as exc_info:
        FrameReader(Framing()).feed(good + b"\xff\xff")
    assert str(exc_info.value) == "Declared frame length 65535 exceeds the maximum 8192: pos 6"


def test_non_digit_ascii_length_prefix() -> None:
    with pytest.raises(FramingError) as exc_info:
        FrameReader(Framing(length_prefix="ascii4")).feed(b"00x4" + b"0800")
    assert str(exc_info.value) == "Length prefix b'00x4' is not 4 ASCII digits: pos 0"


def test_wrong_tpdu_id() -> None:
    with pytest.raises(FramingError) as exc_info:
        FrameReader(Framing(tpdu=True)).feed(b"\x00\x07" b"\x61\x01\x12\x00\x00" b"\x08\x00")
    assert str(exc_info.value) == "TPDU id 0x61, expecting 0x60: pos 2"


def test_unknown_mti() -> None:
    wire = b"0900" b"0020000000800000" b"000001" b"10000001"
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("intl-ascii"))
    assert str(exc_info.value) == f"Unknown MTI '0900', expecting one of {ALL_INTL_MTIS}: field t pos 0 mti 0900"


def test_unknown_mti_refused_before_sending() -> None:
    with pytest.raises(CodecError) as exc_info:
        encode({"t": "0900", "11": "000001", "41": "10000001"}, get_dialect("intl-ascii"))
    assert str(exc_info.value) == f"Unknown MTI '0900', expecting one of {ALL_INTL_MTIS}: field t pos 0 mti 0900"


def test_field_not_in_dialect() -> None:
    wire = b"0800" b"8020000000800000" b"0000000000000001" b"000001" b"10000001" b"x"  # bit 128
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("intl-ascii"))
    assert str(exc_info.value) == ("Field 128 is present in the bitmap but not defined in dialect intl-ascii: "
                                   "field 128 pos ? mti 0800")


def test_fixed_field_too_short() -> None:
    with pytest.raises(CodecError) as exc_info:
        encode({**SALE_FIELDS, "41": "1000001"}, get_dialect("intl-ascii"))
    assert str(exc_info.value) == "Field 41 is 7 characters, expecting 8 (ans 8): field 41 pos 74 mti 0200"


def test_extra_bytes_after_last_field() -> None:
    with pytest.raises(CodecError) as exc_info:
        decode(SALE_ASCII + b"99", get_dialect("intl-ascii"))
    assert str(exc_info.value) == "Extra data after last field: field 62 pos 106 mti 0200"


def test_codec_error_survives_pickling() -> None:
    import pickle

    err = CodecError("Field 4 holds 'x'", field="4", pos=3, mti="0200")
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.field, again.pos, again.mti) == (str(err), "4", 3, "0200")


def test_a_bcd_field_39_is_reported_at_field_39_not_where_decoding_ran_out() -> None:
    """A peer that sends 39 as one BCD byte shifts every field after it; pyiso8583 stops at field
    70, where the bytes run out, but the layouts parted at 39."""
    wire = (b"\x08\x10" b"\x80\x20\x00\x00\x02\x80\x00\x00" b"\x04\x00\x00\x00\x00\x00\x00\x00"  # 11 | 39 41 | 70
            b"\x00\x00\x01" b"\x00"  # 39 as BCD 00, where 2 ASCII characters belong
            b"10000001" b"\x00\x01")
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("intl-bcd"))
    assert (exc_info.value.field, exc_info.value.pos, exc_info.value.mti) == ("39", 21, "0810")
    assert str(exc_info.value) == (
        "Field 39 holds '\\x001', expecting letters, digits and spaces only (an 2); the bytes after it do not "
        "decode either (stopped at field 70: Field data is 2 nibbles, expecting 3): field 39 pos 21 mti 0810")


def test_a_cup_answer_with_a_bcd_field_39_names_field_39() -> None:
    wire = (b"\x02\x10" b"\x20\x20\x00\x00\x02\xC0\x00\x10" b"\x00\x00\x00" b"\x00\x00\x02"
            b"\x00"  # 39 as BCD
            b"10000001" b"123456789012345" b"\x00\x11\x22\x00\x00\x01\x00\x00")
    with pytest.raises(CodecError) as exc_info:
        decode(wire, get_dialect("cup"))
    assert exc_info.value.field == "39" and exc_info.value.pos == 16
