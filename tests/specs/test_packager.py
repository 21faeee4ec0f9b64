"""jPOS GenericPackager files (hand-written ones of ours in the jPOS format) become field layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from specs.codec import decode, encode
from specs.dialects import load_dialect
from specs.packager import read_packager
from specs.profile import ProfileError

DATA = Path(__file__).parent.parent / "data"
EDC = str(DATA / "edc-ascii-mti.xml")


def write(tmp_path: Path, fields: str) -> str:
    path = tmp_path / "host.xml"
    path.write_text('<?xml version="1.0"?>\n<isopackager>\n' + fields + "</isopackager>\n", encoding="utf-8")
    return str(path)


def test_the_packager_classes_become_field_formats() -> None:
    formats, mti, bitmap = read_packager(EDC)
    assert (mti, bitmap) == ("ascii", "binary")
    assert formats["2"] | {"desc": ""} == {"kind": "n", "length": "LL", "max_len": 19, "encoding": "ascii",
                                           "length_encoding": "ascii", "desc": ""}
    assert (formats["22"]["align"], formats["3"]["align"]) == ("left", "right")  # pad="false" / pad="true"
    assert formats["35"]["kind"] == "z" and formats["35"]["encoding"] == "bcd"  # track data stays track data
    assert (formats["60"]["kind"], formats["60"]["length_encoding"]) == ("ans", "bcd")
    assert (formats["64"]["kind"], formats["64"]["encoding"]) == ("b", "binary")


def test_a_sign_on_in_the_packager_layout_literal_bytes() -> None:
    wire = load_dialect("intl-bcd", None, EDC)
    message = {"t": "0800", "11": "000001", "24": "112", "41": "10000001", "70": "001"}
    data = (b"0800"  # IFA_NUMERIC MTI
            b"\x80\x20\x01\x00\x00\x80\x00\x00" b"\x04\x00\x00\x00\x00\x00\x00\x00"  # IFB_BITMAP, secondary for 70
            b"\x00\x00\x01" b"\x01\x12" b"10000001" b"\x00\x01")
    assert encode(message, wire) == data
    assert decode(data, wire) == message


def test_a_sale_in_the_packager_layout_literal_bytes() -> None:
    wire = load_dialect("intl-bcd", None, EDC)
    message = {"t": "0200", "2": "4761739001010010", "3": "000000", "4": "000000001234", "11": "000002",
               "22": "012", "24": "112", "25": "00", "41": "10000001", "42": "123456789012345", "62": "000001"}
    data = (b"0200" b"\x70\x20\x05\x80\x00\xC0\x00\x04"  # bits 2 3 4 | 11 | 22 24 | 25 | 41 42 | 62
            b"16" b"4761739001010010"  # IFA_LLNUM: ASCII length and digits
            b"\x00\x00\x00" b"\x00\x00\x00\x00\x12\x34" b"\x00\x00\x02"
            b"\x01\x20"  # IFB_NUMERIC pad="false": left-aligned
            b"\x01\x12" b"\x00" b"10000001" b"123456789012345" b"\x00\x06" b"000001")
    assert encode(message, wire) == data
    assert decode(data, wire) == message


def test_only_the_packager_s_fields_exist() -> None:
    wire = load_dialect("intl-bcd", None, EDC)
    assert "48" not in wire.formats and "70" in wire.formats
    with pytest.raises(ValueError, match="Field 54 is not defined in dialect intl-bcd"):
        encode({"t": "0800", "11": "000001", "41": "10000001", "54": "1", "70": "001"}, wire)


def test_an_unknown_class_is_named_with_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, '  <isofield id="0" length="4" name="MTI" class="org.jpos.iso.IFB_NUMERIC"/>\n'
                           '  <isofield id="2" length="19" name="PAN" class="org.jpos.iso.IFX_FOO"/>\n')
    with pytest.raises(ProfileError) as exc_info:
        read_packager(path)
    error = exc_info.value
    assert (error.file, error.line, error.key) == ("host.xml", 4, "isofield[id=2].class")
    assert error.msg.startswith("unknown packager class org.jpos.iso.IFX_FOO for field 2, expecting one of "
                                "org.jpos.iso.IFA_BINARY, ")


@pytest.mark.parametrize(("fields", "line", "key", "start"), [
    ('<isofield id="0" length="4" class="org.jpos.iso.IFB_BITMAP"/>\n', 3, "isofield[id=0].class",
     "unknown packager class org.jpos.iso.IFB_BITMAP for the MTI (field 0)"),
    ('<isofield id="x" length="4" class="org.jpos.iso.IF_CHAR"/>\n', 3, "isofield[id=x].id",
     "id 'x' is not a field number 0-128"),
    ('<isofield id="41" length="eight" class="org.jpos.iso.IF_CHAR"/>\n', 3, "isofield[id=41].length",
     "length 'eight' is not a whole number above 0"),
    ('<isofield id="41" length="8" class="org.jpos.iso.IF_CHAR"/>\n<isofield id="41" length="8" '
     'class="org.jpos.iso.IF_CHAR"/>\n', 4, "isofield[id=41]", "field 41 defined twice, first on line 3"),
])
def test_bad_isofields_are_named(tmp_path: Path, fields: str, line: int, key: str, start: str) -> None:
    with pytest.raises(ProfileError) as exc_info:
        read_packager(write(tmp_path, fields))
    assert (exc_info.value.line, exc_info.value.key) == (line, key) and exc_info.value.msg.startswith(start)


def test_malformed_xml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "host.xml"
    path.write_text('<isopackager>\n  <isofield id="2"\n</isopackager>\n', encoding="utf-8")
    with pytest.raises(ProfileError, match=r"^host.xml line 3: XML syntax error"):
        read_packager(str(path))


def test_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE isopackager [<!ENTITY a "aaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;">]>\n<isopackager name="&b;"/>\n', encoding="utf-8")
    with pytest.raises(ProfileError, match="XML refused"):
        read_packager(str(path))


def test_the_wrong_root_element_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "host.xml"
    path.write_text("<packager/>\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"root element <packager>, expecting <isopackager>"):
        read_packager(str(path))
