"""The wire pinned with literal bytes, both directions, per dialect.

Every expected byte string is written out here segment by segment (bitmaps worked out by hand from
the bit numbers), never produced by our encoder: emulator and host share one codec, so only
literal bytes catch a bug both sides would share.
"""

from __future__ import annotations

import pytest

from specs.codec import decode, encode
from specs.dialects import get_dialect
from specs.framing import CupHeader, Frame, FrameReader, Framing, Tpdu, pack

TOTALS_63 = "003" + "000000006000" + "000" + "000000000000" + "0" * 60
CUP_48 = "000000006000" + "003" + "000000000000" + "000" + "0" + "0" * 31

CASES = [
    # ---------------------------------------------------------------- intl-ascii
    ("intl-ascii", "0800 sign-on",
     {"t": "0800", "11": "000001", "24": "112", "41": "10000001", "70": "001"},
     b"0800"
     b"8020010000800000"  # bits 1 (secondary), 11, 24, 41
     b"0400000000000000"  # bit 70
     b"000001" b"112" b"10000001" b"001"),
    ("intl-ascii", "0200 sale",
     {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001234", "11": "000002", "14": "2512",
      "22": "012", "24": "112", "25": "00", "41": "10000001", "42": "123456789012345", "62": "000001"},
     b"0200"
     b"7024058000C00004"  # bits 2 3 4 | 11 14 | 22 24 | 25 | 41 42 | 62
     b"16" b"4761739001010010" b"000000" b"000000001234" b"000002" b"2512" b"012" b"112" b"00"
     b"10000001" b"123456789012345" b"006" b"000001"),
    ("intl-ascii", "0210 approval",
     {"t": "0210", "3": "000000", "4": "000000001234", "11": "000002", "12": "093015", "13": "1122",
      "24": "112", "37": "263260000001", "38": "007919", "39": "00", "41": "10000001"},
     b"0210"
     b"303801000E800000"  # bits 3 4 | 11 12 13 | 24 | 37 38 39 | 41
     b"000000" b"000000001234" b"000002" b"093015" b"1122" b"112" b"263260000001" b"007919" b"00" b"10000001"),
    ("intl-ascii", "0400 reversal",
     {"t": "0400", "2": "4761739001010010", "3": "000000", "4": "000000001234", "11": "000002", "14": "2512",
      "22": "012", "24": "112", "25": "00", "41": "10000001", "42": "123456789012345"},
     b"0400"
     b"7024058000C00000"
     b"16" b"4761739001010010" b"000000" b"000000001234" b"000002" b"2512" b"012" b"112" b"00"
     b"10000001" b"123456789012345"),
    ("intl-ascii", "0500 settlement",
     {"t": "0500", "3": "920000", "11": "000005", "24": "112", "41": "10000001", "42": "123456789012345",
      "60": "000001", "63": TOTALS_63},
     b"0500"
     b"2020010000C00012"  # bits 3 | 11 | 24 | 41 42 | 60 63
     b"920000" b"000005" b"112" b"10000001" b"123456789012345" b"006" b"000001" b"090" + TOTALS_63.encode()),
    # ---------------------------------------------------------------- intl-bcd
    ("intl-bcd", "0800 sign-on",
     {"t": "0800", "11": "000001", "24": "112", "41": "10000001", "70": "001"},
     b"\x08\x00"
     b"\x80\x20\x01\x00\x00\x80\x00\x00" b"\x04\x00\x00\x00\x00\x00\x00\x00"
     b"\x00\x00\x01" b"\x01\x12" b"10000001" b"\x00\x01"),
    ("intl-bcd", "0200 sale",
     {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001234", "11": "000002", "14": "2512",
      "22": "012", "24": "112", "25": "00", "41": "10000001", "42": "123456789012345", "62": "000001"},
     b"\x02\x00"
     b"\x70\x24\x05\x80\x00\xC0\x00\x04"
     b"\x16\x47\x61\x73\x90\x01\x01\x00\x10"  # LL BCD 16 + PAN
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x25\x12" b"\x00\x12" b"\x01\x12" b"\x00"
     b"10000001" b"123456789012345" b"\x00\x06" b"000001"),
    ("intl-bcd", "0210 approval",
     {"t": "0210", "3": "000000", "4": "000000001234", "11": "000002", "12": "093015", "13": "1122",
      "24": "112", "37": "263260000001", "38": "007919", "39": "00", "41": "10000001"},
     b"\x02\x10"
     b"\x30\x38\x01\x00\x0E\x80\x00\x00"
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x09\x30\x15" b"\x11\x22" b"\x01\x12"
     b"263260000001" b"007919" b"00" b"10000001"),
    ("intl-bcd", "0400 reversal with track 2",
     {"t": "0400", "3": "000000", "4": "000000001234", "11": "000002", "22": "022", "24": "112", "25": "00",
      "35": "4761739001010010=2512101", "41": "10000001", "42": "123456789012345"},
     b"\x04\x00"
     b"\x30\x20\x05\x80\x20\xC0\x00\x00"  # bits 3 4 | 11 | 22 24 | 25 | 35 | 41 42
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x00\x22" b"\x01\x12" b"\x00"
     b"\x24\x47\x61\x73\x90\x01\x01\x00\x10\xD2\x51\x21\x01"  # 24 nibbles, '=' as D
     b"10000001" b"123456789012345"),
    ("intl-bcd", "0500 settlement",
     {"t": "0500", "3": "920000", "11": "000005", "24": "112", "41": "10000001", "42": "123456789012345",
      "60": "000001", "63": TOTALS_63},
     b"\x05\x00"
     b"\x20\x20\x01\x00\x00\xC0\x00\x12"
     b"\x92\x00\x00" b"\x00\x00\x05" b"\x01\x12" b"10000001" b"123456789012345" b"\x00\x06" b"000001"
     b"\x00\x90" + TOTALS_63.encode()),
    # ---------------------------------------------------------------- cup
    ("cup", "0800 sign-on",
     {"t": "0800", "11": "000001", "41": "10000001", "42": "123456789012345", "60": "00000001003", "63": "001"},
     b"\x08\x00"
     b"\x00\x20\x00\x00\x00\xC0\x00\x12"  # bits 11 | 41 42 | 60 63
     b"\x00\x00\x01" b"10000001" b"123456789012345"
     b"\x00\x11\x00\x00\x00\x01\x00\x30"  # LLL 11 nibbles, left-aligned, right pad 0
     b"\x00\x03" b"001"),
    ("cup", "0200 sale",
     {"t": "0200", "2": "6229141777631700", "3": "000000", "4": "000000001234", "11": "000002", "14": "3106",
      "22": "012", "25": "00", "41": "10000001", "42": "123456789012345", "49": "156", "60": "22000001000"},
     b"\x02\x00"
     b"\x70\x24\x04\x80\x00\xC0\x80\x10"  # bits 2 3 4 | 11 14 | 22 | 25 | 41 42 | 49 | 60
     b"\x16\x62\x29\x14\x17\x77\x63\x17\x00"
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x31\x06" b"\x01\x20" b"\x00"  # 22 left-aligned
     b"10000001" b"123456789012345" b"156" b"\x00\x11\x22\x00\x00\x01\x00\x00"),
    ("cup", "0210 approval",
     {"t": "0210", "3": "000000", "4": "000000001234", "11": "000002", "12": "093015", "13": "1122",
      "15": "1122", "37": "263260000001", "38": "007919", "39": "00", "41": "10000001",
      "42": "123456789012345", "60": "22000001000"},
     b"\x02\x10"
     b"\x30\x3A\x00\x00\x0E\xC0\x00\x10"  # bits 3 4 | 11 12 13 15 | 37 38 39 | 41 42 | 60
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x09\x30\x15" b"\x11\x22" b"\x11\x22"
     b"263260000001" b"007919" b"00" b"10000001" b"123456789012345" b"\x00\x11\x22\x00\x00\x01\x00\x00"),
    ("cup", "0400 reversal, reason 98, with MAC",
     {"t": "0400", "2": "6229141777631700", "3": "000000", "4": "000000001234", "11": "000002", "14": "3106",
      "22": "012", "25": "00", "39": "98", "41": "10000001", "42": "123456789012345", "49": "156",
      "60": "22000001000", "64": "0102030405060708"},
     b"\x04\x00"
     b"\x70\x24\x04\x80\x02\xC0\x80\x11"  # ... 39 | 41 42 | 49 | 60 64
     b"\x16\x62\x29\x14\x17\x77\x63\x17\x00"
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02" b"\x31\x06" b"\x01\x20" b"\x00"  # 22 left-aligned
     b"98" b"10000001" b"123456789012345" b"156" b"\x00\x11\x22\x00\x00\x01\x00\x00"
     b"\x01\x02\x03\x04\x05\x06\x07\x08"),
    ("cup", "0500 settlement",
     {"t": "0500", "11": "000005", "41": "10000001", "42": "123456789012345", "48": CUP_48, "49": "156",
      "60": "00000001201", "63": "001"},
     b"\x05\x00"
     b"\x00\x20\x00\x00\x00\xC1\x80\x12"  # bits 11 | 41 42 48 | 49 | 60 63
     b"\x00\x00\x05" b"10000001" b"123456789012345"
     b"\x00\x62" + bytes.fromhex(CUP_48) +
     b"156" b"\x00\x11\x00\x00\x00\x01\x20\x10" b"\x00\x03" b"001"),
    ("cup", "0200 alignments: 19-digit PAN, 22 left, 23 right, 60 with 60.4/60.5",
     {"t": "0200", "2": "6229141777631700123", "3": "000000", "4": "000000001234", "11": "000002", "22": "051",
      "23": "001", "25": "00", "41": "10000001", "42": "123456789012345", "49": "156", "60": "2200000100050"},
     b"\x02\x00"
     b"\x70\x20\x06\x80\x00\xC0\x80\x10"  # bits 2 3 4 | 11 | 22 23 | 25 | 41 42 | 49 | 60
     b"\x19\x62\x29\x14\x17\x77\x63\x17\x00\x12\x30"  # LLVAR: left-aligned, pad 0 after
     b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02"
     b"\x05\x10"  # 22 服务点输入方式码 N3: left-aligned (左靠)
     b"\x00\x01"  # 23 卡序列号 N3: right-aligned (右靠)
     b"\x00" b"10000001" b"123456789012345" b"156"
     b"\x00\x13\x22\x00\x00\x01\x00\x05\x00"),  # 13 nibbles: 22 000001 000 5 0, pad 0 after
    ("cup", "0810 sign-on answer with 32 and 37",
     {"t": "0810", "11": "000007", "12": "093015", "13": "1122", "32": "12345", "37": "263260000001", "39": "00",
      "41": "10000001", "42": "123456789012345", "60": "00000001003", "62": "0102"},
     b"\x08\x10"
     b"\x00\x38\x00\x01\x0A\xC0\x00\x14"  # bits 11 12 13 | 32 | 37 39 | 41 42 | 60 62
     b"\x00\x00\x07" b"\x09\x30\x15" b"\x11\x22"
     b"\x05\x12\x34\x50"  # 32 N..11: 5 digits, left-aligned
     b"263260000001" b"00" b"10000001" b"123456789012345"
     b"\x00\x11\x00\x00\x00\x01\x00\x30" b"\x00\x02\x01\x02"),
]


@pytest.mark.parametrize(("dialect", "name", "message", "wire"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_encode_matches_literal_bytes(dialect: str, name: str, message: dict[str, str], wire: bytes) -> None:
    assert encode(message, get_dialect(dialect)) == wire


@pytest.mark.parametrize(("dialect", "name", "message", "wire"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_decode_literal_bytes(dialect: str, name: str, message: dict[str, str], wire: bytes) -> None:
    assert decode(wire, get_dialect(dialect)) == message


def test_intl_frame_with_tpdu_literal_bytes() -> None:
    """INTL: 2-byte length, TPDU 60 0112 0000 (NII 112), then the message; the host swaps the TPDU."""
    message = b"\x08\x00" b"\x80\x20\x01\x00\x00\x80\x00\x00" b"\x04\x00\x00\x00\x00\x00\x00\x00" \
              b"\x00\x00\x01" b"\x01\x12" b"10000001" b"\x00\x01"
    wire = b"\x00\x26" b"\x60\x01\x12\x00\x00" + message  # 5 + 33 = 38 = 0x26
    framing = Framing(tpdu=True)
    assert pack(Frame(message=message, tpdu=Tpdu(destination="0112", source="0000")), framing) == wire
    [frame] = FrameReader(framing).feed(wire)
    assert frame.tpdu == Tpdu(destination="0112", source="0000")
    assert frame.tpdu.swapped().to_bytes() == b"\x60\x00\x00\x01\x12"
    assert decode(frame.message, get_dialect("intl-bcd"))["70"] == "001"


def test_cup_frame_with_tpdu_and_header_literal_bytes() -> None:
    """CUP: length counts TPDU + 6-byte header + message; header 60 31 0 3 000000 = re-sign-on demand."""
    message = b"\x08\x10" b"\x00\x20\x00\x00\x02\xC0\x00\x10" b"\x00\x00\x01" b"00" b"10000001" \
              b"123456789012345" b"\x00\x11\x00\x00\x00\x01\x00\x30"
    wire = b"\x00\x39" b"\x60\x00\x00\x01\x12" b"\x60\x31\x03\x00\x00\x00" + message  # 5 + 6 + 46 = 57
    framing = Framing(tpdu=True, cup_header=True)
    header = CupHeader(processing_requirement="3")
    assert pack(Frame(message=message, tpdu=Tpdu(destination="0000", source="0112"), header=header), framing) == wire
    [frame] = FrameReader(framing).feed(wire)
    assert frame.header == header
    assert frame.header.processing_requirement == "3"
    assert decode(frame.message, get_dialect("cup")) == {
        "t": "0810", "11": "000001", "39": "00", "41": "10000001", "42": "123456789012345", "60": "00000001003"}


def test_ascii_length_prefix_literal_bytes() -> None:
    message = b"0800" b"8020010000800000" b"0400000000000000" b"000001" b"112" b"10000001" b"001"
    framing = Framing(length_prefix="ascii4")
    assert pack(Frame(message=message), framing) == b"0056" + message
    assert FrameReader(framing).feed(b"0056" + message) == [Frame(message=message)]


def test_repeat_mti_is_a_message_of_its_own() -> None:
    """0221 (advice repeat) follows the rules of 0220 and keeps its own MTI on the wire."""
    fields = {"t": "0221", "3": "000000", "4": "000000000100", "11": "000007", "41": "10000001",
              "42": "123456789012345"}
    wire = b"0221" b"3020000000C00000" b"000000" b"000000000100" b"000007" b"10000001" b"123456789012345"
    assert encode(fields, get_dialect("intl-ascii")) == wire
    assert decode(wire, get_dialect("intl-ascii")) == fields


def test_every_odd_length_cup_numeric_has_the_cup_alignment() -> None:
    """22 is left-aligned and 23 right-aligned (the CUP field table: 左靠 / 右靠); every variable
    BCD numeric (2, 32, 48, 60, 61) and the track data (35, 36) are left-aligned, padded after."""
    spec = get_dialect("cup").spec
    assert spec["22"].get("right_pad") == "0" and "left_pad" not in spec["22"]
    assert spec["23"].get("left_pad") == "0" and "right_pad" not in spec["23"]
    for number in ("2", "32", "48", "60", "61"):
        assert spec[number].get("right_pad") == "0" and "left_pad" not in spec[number], number
    for number in ("35", "36"):
        assert spec[number].get("right_pad") == "F", number


def test_a_real_cup_terminal_s_entry_mode_reads_as_sent() -> None:
    """``01 20`` in field 22 is "012" (manual entry, no PIN), not "120"."""
    wire = (b"\x02\x00" b"\x20\x20\x04\x80\x00\xC0\x80\x10" b"\x00\x00\x00" b"\x00\x00\x02" b"\x01\x20"
            b"\x00" b"10000001" b"123456789012345" b"156" b"\x00\x11\x22\x00\x00\x01\x00\x00")
    assert decode(wire, get_dialect("cup"))["22"] == "012"
