"""Masking of card data and keys; the response-code table; dialect spec integrity."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from specs import codes
from specs.dialects import DIALECTS
from specs.logs import configure_logging
from specs.masking import mask_message, mask_pan, mask_text, mask_value

PAN = "4761739001010010"


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
