"""The durable journal (reopened from its file, older files migrated) and the settings loader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from emulator.journal import Journal
from emulator.settings import SettingsError, TerminalSettings, describe, load_settings
from emulator.terminal import (
    Action,
    Advice,
    Books,
    CloseBatch,
    CommitApproval,
    JournalRecord,
    MarkUploaded,
    ParkReversal,
    PendingReversal,
    SaveAdvice,
    SaveCounters,
    SaveMarkers,
    SaveReversal,
    SaveSettlement,
    SaveSignOn,
    SettlementStage,
    SettlementState,
)

RECORD = JournalRecord(invoice="000001", stan="000002", batch="000001", kind="sale", amount_minor=1000,
                       pan="4761739001010010", expiry="3012", rrn="263260000001", auth_code="007919",
                       local_date="1122", local_time="093015")


def test_every_write_survives_reopening_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "t.sqlite")
    actions: list[Action] = [
        SaveCounters(stan=5, invoice=2, batch=3),
        SaveSignOn(signed_on=True, key_block="AB" * 20, key_mode="003", clock_offset_seconds=-12.5),
        SaveMarkers(signon_required=True, param_download="6"),
        SaveReversal(reversal=PendingReversal(stan="000004", kind="sale", message={"t": "0400", "11": "000004"})),
        SaveReversal(reversal=PendingReversal(stan="000005", kind="void", message={"t": "0400", "11": "000005"})),
        ParkReversal(stan="000005", why="refused 3 times, last rc 25"),
        CommitApproval(record=RECORD, reversal_stan="000004"),
        SaveAdvice(advice=Advice(stan="000006", kind="adjust", message={"t": "0220"}, invoice="000001",
                                 on_decline=(("000001", {"amount_minor": 1000}),)),
                   edits=(("000001", {"amount_minor": 1200, "tip_minor": 200}),)),
        SaveSettlement(state=SettlementState(batch="000003", stage=SettlementStage.UPLOADING, result="unbalanced",
                                             uploaded=1, first_rc="95")),
        MarkUploaded(invoices=("000001",)),
    ]
    mirror = Books()
    journal = Journal(path)
    for action in actions:
        journal.apply(action)
        mirror.apply(action)
    journal.close()
    reopened = Journal(path)
    try:
        books = reopened.load()
        assert books == mirror
        assert (books.stan, books.batch, books.signed_on, books.clock_offset_seconds) == (5, 3, True, -12.5)
        assert books.records[0].amount_minor == 1200 and books.records[0].uploaded
        assert [r.stan for r in books.reversals] == [] and books.parked[0][:2] == ("reversal", "000005")
        assert books.settlement is not None and books.settlement.stage is SettlementStage.UPLOADING
        reopened.apply(CloseBatch(batch="000003", next_batch=4))
        closed = reopened.load()
        assert (closed.records, closed.settlement, closed.batch) == ([], None, 4)
        assert closed.history[0].invoice == "000001"
    finally:
        reopened.close()


def test_a_journal_written_by_the_walking_skeleton_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE journal (id INTEGER PRIMARY KEY, invoice TEXT NOT NULL, stan TEXT NOT NULL,
        batch TEXT NOT NULL, kind TEXT NOT NULL, amount_minor INTEGER NOT NULL, pan TEXT NOT NULL,
        expiry TEXT NOT NULL, rrn TEXT NOT NULL, auth_code TEXT NOT NULL, local_date TEXT NOT NULL,
        local_time TEXT NOT NULL, settlement_date TEXT, settled INTEGER NOT NULL DEFAULT 0);
        INSERT INTO journal (invoice, stan, batch, kind, amount_minor, pan, expiry, rrn, auth_code, local_date,
        local_time) VALUES ('000001', '000002', '000001', 'sale', 500, '4761739001010010', '3012', 'R', 'A',
        '1122', '0930');""")
    db.commit()
    db.close()
    journal = Journal(str(path))
    try:
        [record] = journal.load().records
        assert (record.amount_minor, record.status, record.uploaded) == (500, "approved", False)
    finally:
        journal.close()


def test_settings_from_yaml_then_set(tmp_path: Path) -> None:
    config = tmp_path / "t.yaml"
    config.write_text("final_reversal_codes: [0, 12, '25']\nreversal_first: no\nbackoff_initial_seconds: 1\n",
                      encoding="utf-8")
    s = load_settings(config, ["max_batch_amount_minor=500000", "crash_at=c"])
    assert s.final_reversal_codes == ("00", "12", "25")  # YAML reads 00 as 0: codes are put back to 2 digits
    assert (s.reversal_first, s.backoff_initial_seconds, s.max_batch_amount_minor, s.crash_at) == (
        False, 1.0, 500000, "c")
    assert describe(s)["tmk"] == "*(32)" and describe(s)["final_reversal_codes"] == ["00", "12", "25"]


@pytest.mark.parametrize(("text", "overrides", "message"), [
    ("- a\n", [], "holds a list, expecting a mapping of setting names to values"),
    ("reversal_first: maybe\n", [], "Setting reversal_first holds 'maybe', expecting true or false"),
    ("", ["key_mode=002"], "Setting key_mode is '002', expecting one of 001, 003, 004"),
    ("", ["tmk=XYZ"], "Setting tmk is 3 characters, expecting 16, 32 or 48 hex digits"),
    ("", ["reversal_max_attempts=0"], "Setting reversal_max_attempts is 0, expecting at least 1"),
    ("", ["no_equals_sign"], "--set 'no_equals_sign' has no '=', expecting name=value"),
])
def test_bad_settings_name_the_setting(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    config = tmp_path / "t.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_settings(config, overrides)
    assert message in str(info.value)


def test_every_fix_toggle_defaults_on() -> None:
    s = TerminalSettings()
    toggles = ["save_reversal_before_send", "reversal_first", "reverse_at_idle", "park_stuck_reversal",
               "drain_saf_before_settle", "trickle_saf", "commit_before_print", "auto_signon_on_77",
               "verify_response_mac", "batch_upload_on_unbalanced", "block_sales_while_settling"]
    assert all(getattr(s, t) is True for t in toggles)
    assert s.final_reversal_codes == ("00", "12", "25") and not s.printer_fails and s.crash_at == ""
