"""Masking of card data and keys; the response-code table; dialect spec integrity."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import structlog

from specs import codes
from specs.dialects import DIALECTS
from specs.logs import configure_logging
from specs.masking import mask_error_text, mask_message, mask_named, mask_pan, mask_text, mask_value

PAN = "4761739001010010"
TMK = "0123456789ABCDEFFEDCBA9876543210"
PIN_BLOCK = "0412AC89ABCDEF67"
TRACK2 = PAN + "=25121010000012300000"


def test_pan_first6_last4() -> None:
    assert mask_pan(PAN) == "476173******0010"
    assert mask_pan("6229141777631700123") == "622914*********0123"


def test_sensitive_fields_never_shown() -> None:
    masked = mask_message({"t": "0200", "2": PAN, "35": PAN + "=2512101", "52": "0123456789ABCDEF",
                           "55": "9F2608AABBCCDDEEFF0011", "4": "000000001234", "11": "000001"})
    assert masked == {"t": "0200", "2": "476173******0010", "35": "*(24)", "52": "*(16)", "55": "*(22)",
                      "4": "000000001234", "11": "000001"}


def test_keys_in_signon_field_62_hidden_but_invoice_kept() -> None:
    assert mask_message({"t": "0810", "62": "AABBCCDD" * 5})["62"] == "*(40)"
    assert mask_message({"t": "0200", "62": "000123"})["62"] == "000123"


def test_nested_values_and_secret_names() -> None:
    event = {"event": "declined card " + PAN, "pan": PAN, "tmk": "0123456789ABCDEF",
             "request": {"t": "0200", "2": PAN}, "rows": [{"pan": PAN}]}
    assert mask_value(event) == {"event": "declined card 476173******0010", "pan": "476173******0010",
                                 "tmk": "*(16)", "request": {"t": "0200", "2": "476173******0010"},
                                 "rows": [{"pan": "476173******0010"}]}


def test_digit_runs_that_are_not_pans_are_kept() -> None:
    assert mask_text("RRN 263260000001 amount 000000001234 id 4761739001010011") == \
        "RRN 263260000001 amount 000000001234 id 4761739001010011"


@pytest.mark.parametrize("as_json", [True, False])
def test_log_lines_are_masked(as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=as_json, level="info")
    structlog.get_logger("t").info("sale", message={"t": "0200", "2": PAN, "35": PAN + "=25121"}, note=f"card {PAN}")
    err = capsys.readouterr().err
    assert PAN not in err
    assert "476173******0010" in err
    if as_json:
        assert json.loads(err.strip().splitlines()[-1])["message"]["35"] == "*(22)"


def test_response_code_actions() -> None:
    assert codes.lookup(codes.APPROVED).approved
    assert codes.lookup(codes.MAC_ERROR).action is codes.TerminalAction.RESIGN_ON
    assert codes.lookup(codes.CUTOVER_IN_PROGRESS).action is codes.TerminalAction.RETRY_LATER
    assert codes.lookup(codes.NOT_SUFFICIENT_FUNDS).action is codes.TerminalAction.DECLINE_NO_RETRY
    assert codes.lookup(codes.DUPLICATE_TRANSMISSION).action is codes.TerminalAction.RECONCILE
    unknown = codes.lookup("Q9")
    assert (unknown.meaning, unknown.action) == ("unknown response code", codes.TerminalAction.DECLINE_NO_RETRY)


def test_every_code_has_texts() -> None:
    for code, entry in codes.CODES.items():
        assert len(code) == 2 and entry.meaning and entry.cup_text and entry.cup_category in "ABCDE"


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_every_spec_field_is_described_and_consistent(name: str) -> None:
    dialect = DIALECTS[name]
    for number, spec in dialect.spec.items():
        assert spec["desc"], f"{name} field {number} has no description"
        assert {"data_enc", "len_enc", "len_type", "max_len"} <= set(spec)
    for mti, fields in dialect.mandatory.items():
        assert {"11", "41"} <= fields, f"{name} {mti} must carry 11 and 41 for response matching"
        assert fields <= set(dialect.formats), f"{name} {mti} requires a field the dialect does not define"


def test_spec_is_read_only() -> None:
    with pytest.raises(TypeError):
        DIALECTS["cup"].spec["4"]["max_len"] = 99  # type: ignore[index]


def test_cup_upload_records_mask_their_pans() -> None:
    records = "02" + "00" + "000007" + "00006229141777631700" + "000000001000" \
                   + "00" + "000008" + "00004761739001010010" + "000000000500"
    masked = mask_message({"t": "0320", "11": "000009", "48": records, "60": "00000001201"})
    assert masked["48"] == ("02" + "00" + "000007" + "0000622914******1700" + "000000001000"
                            + "00" + "000008" + "0000476173******0010" + "000000000500")
    assert mask_message({"t": "0320", "48": "0003", "60": "00000001202"})["48"] == "0003"  # end message: a count


@pytest.mark.parametrize("as_json", [True, False])
def test_secrets_logged_under_a_top_level_key_are_masked(as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=as_json, level="info")
    structlog.get_logger("t").info("keys loaded", tmk=TMK, pin="1234", key=PIN_BLOCK, track2=TRACK2, pan=PAN,
                                   PIN_BLOCK=PIN_BLOCK, keys={"mak": TMK, "pik": [PIN_BLOCK]}, master_key=int("1" * 16))
    err = capsys.readouterr().err
    for clear in (TMK, "1234", PIN_BLOCK, TRACK2, PAN, "=2512", "1" * 16):
        assert clear not in err
    if as_json:
        record = json.loads(err.strip().splitlines()[-1])
        assert {k: record[k] for k in ("tmk", "pin", "key", "track2", "pan", "PIN_BLOCK", "keys", "master_key")} == {
            "tmk": "*(32)", "pin": "*(4)", "key": "*(16)", "track2": "*(37)", "pan": "476173******0010",
            "PIN_BLOCK": "*(16)", "keys": {"mak": "*(32)", "pik": ["*(16)"]}, "master_key": "*(16)"}
    else:
        assert "tmk=*(32)" in err and "pan=476173******0010" in err and "track2=*(37)" in err


@pytest.mark.parametrize("as_json", [True, False])
def test_exceptions_are_masked_in_log_lines(as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=as_json, level="info")
    try:
        raise RuntimeError(f"cannot answer card {PAN} ({TRACK2}), tmk={TMK!r}, PIN block {PIN_BLOCK}, "
                           f"request {{'t': '0200', '52': '{PIN_BLOCK}'}}")
    except RuntimeError as exc:
        structlog.get_logger("t").error("host core failed", error=repr(exc), exc_info=True)
    err = capsys.readouterr().err
    for clear in (PAN, TMK, PIN_BLOCK, "=2512"):
        assert clear not in err
    expected = ("RuntimeError: cannot answer card 476173******0010 (*(37)), tmk='*(32)', PIN block *(16), "
                "request {'t': '0200', '52': '*(16)'}")
    if as_json:
        record = json.loads(err.strip().splitlines()[-1])
        assert record["exception"].startswith("Traceback (most recent call last):")
        assert record["exception"].endswith(expected)
        assert "476173******0010" in record["error"]
    else:
        assert "Traceback (most recent call last):" in err and expected in err


@dataclass
class _Card:
    pan: str
    pin: str


def test_objects_are_logged_as_their_masked_repr(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="info")
    structlog.get_logger("t").info("card read", card=_Card(PAN, "1234"), cards=[_Card(PAN, "1234")])
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["card"] == "_Card(pan='476173******0010', pin='*(4)')"
    assert record["cards"] == ["_Card(pan='476173******0010', pin='*(4)')"]


def test_masking_is_idempotent() -> None:
    message = {"t": "0200", "2": PAN, "35": TRACK2, "52": PIN_BLOCK, "55": "9F2608AABBCCDDEEFF0011", "4": "000000001234"}
    once = mask_message(message)
    assert once == {"t": "0200", "2": "476173******0010", "35": "*(37)", "52": "*(16)", "55": "*(22)",
                    "4": "000000001234"}
    assert mask_message(once) == once
    assert mask_value(once) == once
    assert mask_value(mask_value({"request": message})) == {"request": once}
    signon = mask_message({"t": "0810", "62": "AABBCCDD" * 5})
    assert mask_message(signon) == signon == {"t": "0810", "62": "*(40)"}
    upload = mask_message({"t": "0320", "48": "01" + "00" + "000007" + "00006229141777631700" + "000000001000",
                           "60": "00000001201"})
    assert mask_message(upload) == upload
    for name, value in (("tmk", TMK), ("pan", PAN), ("pan", "123"), ("keys", [TMK])):
        assert mask_named(name, mask_named(name, value)) == mask_named(name, value)
    for text in (f"card {PAN} track {TRACK2}", f"tmk={TMK} {{'2': '{PAN}', '35': '{TRACK2}'}} {PIN_BLOCK}"):
        assert mask_text(mask_text(text)) == mask_text(text)
        assert mask_error_text(mask_error_text(text)) == mask_error_text(text)


@pytest.mark.parametrize("as_json", [True, False])
def test_a_message_masked_before_logging_shows_real_lengths(as_json: bool, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=as_json, level="info")
    structlog.get_logger("t").info("request", message=mask_message({"t": "0200", "35": TRACK2, "52": PIN_BLOCK}))
    err = capsys.readouterr().err
    assert "*(5)" not in err
    if as_json:
        assert json.loads(err.strip().splitlines()[-1])["message"] == {"t": "0200", "35": "*(37)", "52": "*(16)"}
    else:
        assert "'35': '*(37)', '52': '*(16)'" in err


def test_error_text_masking_leaves_ordinary_diagnostics_alone() -> None:
    text = ('File "host.py", line 12, in answer\n    key = self._key(request)\n'
            "CodecError: Field 4 data is 11 bytes, expecting 12: field 4 pos 20, RRN 263260000001, STAN 000001")
    assert mask_error_text(text) == text
