"""Host profiles: every switch changes the bytes the way the profile says (literal bytes written out
by hand), and a malformed profile is refused with its file, line and key."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from emulator.messages import Profile, financial_request, network_request, settlement_request
from specs.cliopts import resolve_wire
from specs.codec import decode, encode
from specs.dialects import build_dialect, get_dialect
from specs.profile import ProfileError, WireProfile, load_profile, parse_profile, shipped_profiles
from specs.totals import Totals

NOW = datetime(2026, 11, 22, 9, 30, 15)
MID = b"123456789012345"
#: intl-bcd 0200 with 3, 11, 22, 41, 42 (its mandatory fields): bits 3 | 11 | 22 | 41 42.
SALE = {"t": "0200", "3": "000000", "11": "000001", "22": "012", "41": "10000001", "42": "123456789012345"}
SALE_HEAD = b"\x02\x00" b"\x20\x20\x04\x00\x00\xC0\x00\x00" b"\x00\x00\x00" b"\x00\x00\x01"


def profile(text: str) -> WireProfile:
    return parse_profile(text, name="acme.yaml")


def terminal(wire: WireProfile) -> Profile:
    return Profile(family=wire.family, wire=wire)


# ---------------------------------------------------------------------------------- field formats


@pytest.mark.parametrize(("override", "field_22"), [
    ("", b"\x00\x12"),  # intl-bcd: right-aligned, pad 0 in front
    ('"22": {align: left}', b"\x01\x20"),
    ('"22": {encoding: ascii}', b"012"),
    ('"22": {length: LL, max_len: 3}', b"\x03\x00\x12"),  # LL BCD length; the alignment is kept
    ('"22": {length: LL, max_len: 3, align: left}', b"\x03\x01\x20"),
])
def test_a_field_format_override_changes_the_bytes(override: str, field_22: bytes) -> None:
    wire = build_dialect(profile(f"dialect: intl-bcd\nfields: {{{override}}}\n"))
    expected = SALE_HEAD + field_22 + b"10000001" + MID
    assert encode(SALE, wire) == expected
    assert decode(expected, wire) == SALE


def test_a_field_the_dialect_lacks_is_added_with_a_complete_format() -> None:
    wire = build_dialect(profile('dialect: cup\nfields: {"70": {type: n, length: fixed, max_len: 3}}\n'))
    assert wire.formats["70"].encoding == "bcd" and wire.spec["70"]["left_pad"] == "0"


def test_the_type_of_a_field_changes_what_it_may_hold() -> None:
    wire = build_dialect(profile('dialect: intl-bcd\nfields: {"49": {type: n, encoding: bcd}}\n'))
    message = {**SALE, "49": "156"}
    assert encode(message, wire).endswith(b"\x01\x56")  # n 3 BCD, right-aligned
    with pytest.raises(ValueError, match="Field 49 holds 'USD', expecting digits only"):
        encode({**SALE, "49": "USD"}, wire)


# ---------------------------------------------------------------------------------- messages


def test_optional_fields_are_added_and_omitted_per_mti() -> None:
    wire = profile('dialect: intl-bcd\nmessages: {"0200": {add: [49], omit: [12, 13]}}\n')
    sale = financial_request(terminal(wire), "sale", stan="000002", batch="000001", now=NOW, amount_minor=1234,
                             pan="4761739001010010", expiry="2512", invoice="000001")
    assert sale["49"] == "156" and "12" not in sale and "13" not in sale
    data = encode(sale, build_dialect(wire))
    # bitmap: 2 3 4 | 11 14 | 22 24 | 25 | 41 42 | 49 | 62 (no 12/13)
    assert data[2:10] == b"\x70\x24\x05\x80\x00\xC0\x80\x04"
    plain = financial_request(Profile(), "sale", stan="000002", batch="000001", now=NOW, amount_minor=1234,
                              pan="4761739001010010", expiry="2512", invoice="000001")
    assert "49" not in plain and plain["12"] == "093015"


def test_intl_sign_on_by_processing_code() -> None:
    wire = profile('dialect: intl-bcd\nintl_sign_on: "3=920000"\n')
    message = network_request(terminal(wire), "sign_on", stan="000001", batch="000001", now=NOW)
    assert encode(message, build_dialect(wire)) == (
        b"\x08\x00" b"\x20\x38\x01\x00\x00\xC0\x00\x00"  # bits 3 | 11 12 13 | 24 | 41 42: no secondary bitmap
        b"\x92\x00\x00" b"\x00\x00\x01" b"\x09\x30\x15" b"\x11\x22" b"\x01\x12" b"10000001" + MID)
    default = network_request(Profile(), "sign_on", stan="000001", batch="000001", now=NOW)
    assert default["70"] == "001" and "3" not in default


@pytest.mark.parametrize(("layout", "length", "size"), [("pax90", b"\x00\x90", 90), ("short30", b"\x00\x30", 30)])
def test_intl_totals_layout(layout: str, length: bytes, size: int) -> None:
    wire = profile(f"dialect: intl-bcd\nintl_totals: {layout}\n")
    totals = Totals(debit_count=3, debit_minor=6000)
    message = settlement_request(terminal(wire), totals, stan="000005", batch="000001", now=NOW)
    digits = b"003" b"000000006000" b"000" b"000000000000"
    assert encode(message, build_dialect(wire)).endswith(length + digits + b"0" * (size - 30))


def test_intl_batch_number_in_field_62() -> None:
    wire = profile("dialect: intl-bcd\nbatch_field: 62\n")
    message = settlement_request(terminal(wire), Totals(), stan="000005", batch="000007", now=NOW)
    assert message["62"] == "000007" and "60" not in message
    data = encode(message, build_dialect(wire))
    assert data[2:10] == b"\x20\x38\x01\x00\x00\xC0\x00\x06"  # bits 3 | 11 12 13 | 24 | 41 42 | 62 63
    assert b"\x00\x06000007\x00\x90" in data
    assert build_dialect(wire).mandatory["0500"] >= {"62", "63"} and "60" not in build_dialect(wire).mandatory["0500"]


@pytest.mark.parametrize(("text", "mti", "expected"), [
    ("dialect: cup\n", "0500", False), ("dialect: cup\n", "0320", False), ("dialect: cup\n", "0200", True),
    ("dialect: cup\nmac: {\"0500\": true}\n", "0500", True),
    ("dialect: intl-bcd\n", "0500", True), ("dialect: intl-bcd\nmac: {\"0320\": false}\n", "0320", False),
    ("dialect: intl-bcd\n", "0800", False),
])
def test_which_messages_carry_a_mac(text: str, mti: str, expected: bool) -> None:
    assert profile(text).carries_mac(mti) is expected


def test_profile_framing_is_the_default_and_the_switches_still_win() -> None:
    wire, framing = resolve_wire("cup", "intl-currency-ascii4", None, None, None, None)
    assert (wire.profile.base, framing.length_prefix, framing.tpdu) == ("intl-bcd", "ascii4", True)
    _, framing = resolve_wire("cup", "intl-currency-ascii4", None, "binary2", False, None)
    assert (framing.length_prefix, framing.tpdu) == ("binary2", False)


def test_every_shipped_profile_loads_and_builds() -> None:
    assert len(shipped_profiles()) >= 3
    for name in shipped_profiles():
        wire = build_dialect(load_profile(name))
        assert wire.name == name and wire.profile.description


def test_a_profile_file_is_found_by_path(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text("dialect: cup\ndescription: ACME\n", encoding="utf-8")
    wire = load_profile(str(path))
    assert (wire.name, wire.base, wire.source) == ("acme", "cup", str(path))


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("text", "message"), [
    ("dialect: visa\n", "acme.yaml line 1: key 'dialect': expected one of intl-ascii, intl-bcd, cup, found visa"),
    ("dialect: cup\ncolour: red\n", "acme.yaml line 2: key 'colour': unknown key for a profile, expected one of "
     "batch_field, description, dialect, fields, framing, intl_sign_on, intl_totals, mac, messages, name"),
    ('dialect: cup\nfields:\n  "22": {align: middle}\n',
     "acme.yaml line 3: key 'fields.22.align': expected one of left, right, found middle"),
    ('dialect: cup\nfields:\n  "0": {align: left}\n', "acme.yaml line 3: key 'fields.0': expected a field number "
     "2-128, found 0"),
    ("dialect: cup\nintl_totals: short30\n", "acme.yaml line 2: key 'intl_totals': applies to the INTL dialects "
     "only, found it in a cup profile"),
    ('dialect: intl-bcd\nmessages:\n  "0200": {add: [52]}\n', "acme.yaml line 3: key 'messages.0200.add[0]': "
     "expected a field the terminal can fill: 12 (local time hhmmss), 13 (local date MMDD), 24 (NII), 42 (MID), "
     "49 (currency code), found 52"),
    ("dialect: cup\nmac: {200: true}\n", "acme.yaml line 2: key 'mac.200': expected a 4-digit MTI like '0200' "
     "(quoted), found 200"),
])
def test_load_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as exc_info:
        parse_profile(text, name="acme.yaml")
    assert str(exc_info.value) == message


@pytest.mark.parametrize(("text", "message"), [
    ('dialect: intl-bcd\nmessages:\n  "0200":\n    omit: [22]\n',
     "acme.yaml line 4: key 'messages.0200.omit': field 22 is mandatory in 0200 for dialect intl-bcd, "
     "it cannot be omitted"),
    ('dialect: cup\nfields:\n  "70": {type: n}\n',
     "acme.yaml line 3: key 'fields.70': field 70 is not in dialect cup: its format needs length, max_len"),
    ('dialect: cup\nfields:\n  "41": {encoding: bcd}\n',
     "acme.yaml line 3: key 'fields.41': field 41: encoding bcd needs type n or z, found type ans"),
])
def test_build_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ProfileError) as exc_info:
        build_dialect(parse_profile(text, name="acme.yaml"))
    assert str(exc_info.value) == message


def test_a_missing_profile_names_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match=r"^nosuch line 1: no such file, and not a shipped profile \(expecting a "
                                           r"YAML file or one of cup-mac-all, intl-currency-ascii4"):
        load_profile("nosuch")


def test_builtin_dialects_are_their_own_profiles() -> None:
    assert get_dialect("cup").profile.base == "cup" and get_dialect("cup").describe() == "cup"
