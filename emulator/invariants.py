"""The global invariants G1–G8 of docs/domain.md#invariants, implemented once, as pure functions over :class:`Evidence`.

The runner gathers the evidence after a run: the terminal's books (journal J, pending reversals R,
SAF queue Q, settlement state S, closed-batch totals), the host's ledgers as the control API
returns them (authorizations, settlements, payouts, and the received-request journal), the wire
trace the terminal saw, and which STANs served which intended purchase.  Each check returns an
:class:`InvariantResult` whose findings say what was found and where, in words an operator can act
on::

    orphan approval: TID 10000001 STAN 000123 RRN 263260000001 approved on the host, absent from the journal, never reversed

Nothing here does I/O; rows are plain mappings so that JSON from the control API can be passed in
unchanged.  Keys read (others are ignored):

=====================  ========================================================================
source                 keys
=====================  ========================================================================
authorizations (HL)    tid, mid, stan, batch, amount_minor, kind, status, rrn, mti, settled
settlements            tid, batch, result, rc, host_totals {debit_count, debit_minor, credit_count,
                       credit_minor}
payouts (PL)           mid, batch, status (paid, pending, held, failed), amount_minor (net of the
                       fee), fee_minor, value_date (ISO date)
journal (J)            stan, batch, kind, amount_minor, rrn, status (approved, voided, adjusted;
                       missing = approved); one row per approved financial request, closed
                       batches included
closed_batches         batch, debit_count, debit_minor, credit_count, credit_minor
uploads                tid, batch, stan (the host's upload set, when the host reports one)
host_journal           the decoded (masked) request, or a row holding it under ``message``
=====================  ========================================================================

>>> ev = Evidence(tid="10000001", authorizations=(
...     {"tid": "10000001", "mti": "0200", "kind": "sale", "stan": "000123", "rrn": "263260000001",
...      "amount_minor": 1234, "status": "approved"},))
>>> result = check_g1(ev)
>>> result.holds
False
>>> print(result.findings[0])
orphan approval: TID 10000001 STAN 000123 RRN 263260000001 approved on the host, absent from the journal, never reversed
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

from specs.dialects import response_mti
from specs.transactions import identify, layout

Row = Mapping[str, Any]

#: Financial requests the host posts (originals and advice repeats); reversals and uploads are not.
FINANCIAL_MTIS = frozenset({"0100", "0120", "0121", "0200", "0220", "0221"})
REVERSAL_MTIS = frozenset({"0400", "0401", "0420", "0421"})
#: Kinds that count as a debit to the cardholder, and as a credit back (specs.totals classes).
DEBIT_KINDS = frozenset({"sale", "completion", "offline_sale"})
CREDIT_KINDS = frozenset({"refund"})
#: Kinds the journal holds (a balance inquiry is never journalled).
JOURNAL_KINDS = frozenset({"sale", "void", "refund", "preauth", "preauth_void", "completion", "completion_void",
                           "offline_sale", "adjust"})
#: Host ledger statuses of a request that still stands (the host keeps a fully refunded sale as "refunded").
HOST_STANDING = frozenset({"approved", "refunded"})
#: Journal statuses of a record that still stands.
STANDING_JOURNAL = frozenset({"", "approved", "adjusted"})
#: Settlement-ledger results that close a batch on the host.
CLOSED_RESULTS = frozenset({"balanced", "uploaded"})
#: Payout statuses that account for money (a failed payout does not).
ACCOUNTED_PAYOUTS = ("paid", "pending", "held")
#: Where the dialect uses a repeat MTI, later sends of the same message must use it (docs/domain.md#requestresponse-matching-and-timers).
DEFAULT_REPEAT_MTIS: Mapping[str, str] = MappingProxyType({"0120": "0121", "0220": "0221", "0420": "0421"})


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceEvent:
    """One thing the terminal saw or did, in the order it happened.

    Attributes:
        kind: ``sent`` / ``received`` (a message), ``status`` (a snapshot of the terminal's durable
            state taken between steps), ``crash`` (the process died at a crash point), ``restart``.
            Other kinds (``connect_failed``, ``timeout`` …) may appear and are ignored here.
        message: the decoded (masked) message of ``sent`` / ``received``.
        matched: ``received`` only: True when the terminal took the message as the answer to its
            outstanding request, False when it set it aside as stray; None when not reported.
        mac_verified: ``received`` only: True / False when the terminal checked field 64 and it
            verified / failed; None when it did not check.
        pending_reversals, saf_queue: ``status`` only: STANs in R and in Q.
        settlement_state: ``status`` only: ``idle`` or the terminal's name for an unfinished settlement.
        step: the scenario step label that was running.
    """

    kind: str
    message: Mapping[str, str] | None = None
    matched: bool | None = None
    mac_verified: bool | None = None
    pending_reversals: tuple[str, ...] = ()
    saf_queue: tuple[str, ...] = ()
    settlement_state: str | None = None
    step: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Evidence:
    """Everything the invariants look at, for one terminal after one run.

    Attributes:
        tid: the terminal (field 41) whose books are checked; host rows of other TIDs are ignored,
            except payouts, which are per merchant.
        family: ``intl`` or ``cup`` (how requests are recognised: :func:`specs.transactions.identify`).
        journal, pending_reversals, saf_queue, settlement_state, closed_batches, counters: the
            terminal's durable books (``counters`` may hold the current ``batch``).
        authorizations, settlements, payouts, uploads, host_journal: the host's books.
        trace: the terminal's wire trace with status snapshots (:class:`TraceEvent`).
        intents: intended purchase -> the STANs of the requests that served it.
        final_reversal_codes: reversal answers that clear a reversal (the dialect's convention).
        repeat_mtis: original MTI -> repeat MTI where the dialect uses one.
        business_date, holidays: the host's business date and holidays (payout value dates).
        uninterrupted: for G7, the evidence of the same scenario run without crashes.
    """

    tid: str
    family: str = "intl"
    journal: tuple[Row, ...] = ()
    pending_reversals: tuple[Row, ...] = ()
    saf_queue: tuple[Row, ...] = ()
    settlement_state: str = "idle"
    closed_batches: tuple[Row, ...] = ()
    counters: Row = field(default_factory=lambda: MappingProxyType({}))
    authorizations: tuple[Row, ...] = ()
    settlements: tuple[Row, ...] = ()
    payouts: tuple[Row, ...] = ()
    uploads: tuple[Row, ...] = ()
    host_journal: tuple[Row, ...] = ()
    trace: tuple[TraceEvent, ...] = ()
    intents: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    final_reversal_codes: tuple[str, ...] = ("00", "12", "25")
    repeat_mtis: Mapping[str, str] = field(default_factory=lambda: DEFAULT_REPEAT_MTIS)
    business_date: date | None = None
    holidays: frozenset[date] = frozenset()
    uninterrupted: Evidence | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class InvariantResult:
    """The verdict of one invariant.

    Attributes:
        id: ``G1`` … ``G8``.
        holds: True when nothing was found.
        findings: one sentence per violation, naming what and where (TID, STAN, RRN, batch, MID).
        applicable: False when the evidence cannot decide (G7 without an uninterrupted run); such a
            result holds vacuously.
    """

    id: str
    holds: bool
    findings: list[str]
    applicable: bool = True


def _result(invariant: str, findings: list[str]) -> InvariantResult:
    return InvariantResult(id=invariant, holds=not findings, findings=findings)


# ============================================================================ small helpers


def money(minor: int | None) -> str:
    """Minor units as a decimal amount: ``1234`` -> ``'12.34'``."""
    if minor is None:
        return "?"
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _amount(row: Row) -> int:
    return int(row.get("amount_minor") or 0)


def _message_of(row: Row) -> Mapping[str, str]:
    message = row.get("message")
    return message if isinstance(message, Mapping) else row


def _host_financial(ev: Evidence) -> list[Row]:
    """The host's rows for financial requests of this terminal (originals and advice repeats)."""
    return [r for r in ev.authorizations if _s(r.get("tid")) == ev.tid and _s(r.get("mti")) in FINANCIAL_MTIS
            and _s(r.get("kind")) in JOURNAL_KINDS]


def _standing(row: Row) -> bool:
    """A host row that still stands: approved, or a sale refunded in full (it stays a debit; its
    refunds are the credits that cancel it)."""
    return _s(row.get("status")) in HOST_STANDING


def _journal_standing(row: Row) -> bool:
    return _s(row.get("status")) in STANDING_JOURNAL


def _same_batch(a: Row, b: Row) -> bool:
    left, right = _s(a.get("batch")), _s(b.get("batch"))
    return not left or not right or left == right


def _reversal_received(ev: Evidence, stan: str) -> bool:
    """The host accepted a reversal (answered 00) for (this TID, STAN).

    A reversal the host never processed (connection closed first) or refused (A0 for a bad MAC, a
    code outside the final ones) undid nothing, so it does not excuse an approval.
    """
    return any(_s(r.get("mti")) in REVERSAL_MTIS and _s(r.get("stan")) == stan and _s(r.get("tid")) == ev.tid
               and _s(r.get("rc")) == "00" for r in ev.authorizations)


def _is_reversible_request(message: Mapping[str, str], family: str) -> bool:
    if _s(message.get("t")) not in ("0100", "0200"):
        return False
    kind = identify(message, family)
    return kind is not None and layout(kind, family).reversible


def _totals_text(row: Mapping[str, Any]) -> str:
    return (f"debit {int(row.get('debit_count') or 0)}/{money(int(row.get('debit_minor') or 0))} "
            f"credit {int(row.get('credit_count') or 0)}/{money(int(row.get('credit_minor') or 0))}")


def _totals_key(row: Mapping[str, Any]) -> tuple[int, int, int, int]:
    return tuple(int(row.get(k) or 0) for k in ("debit_count", "debit_minor", "credit_count", "credit_minor"))  # type: ignore[return-value]


def host_net_minor(ev: Evidence, intent: str) -> int:
    """The cardholder's net debit on the host for one intended purchase, in minor units.

    Standing debits (sale, completion, offline sale) minus standing refunds over the STANs the
    intent used; voided and reversed requests do not count (their status is no longer approved).
    """
    stans = set(ev.intents.get(intent, ()))
    net = 0
    for row in _host_financial(ev):
        if _s(row.get("stan")) in stans and _standing(row):
            kind = _s(row.get("kind"))
            net += _amount(row) if kind in DEBIT_KINDS else -_amount(row) if kind in CREDIT_KINDS else 0
    return net


# ============================================================================ G1 – G8


def check_g1(ev: Evidence) -> InvariantResult:
    """G1 No orphan approvals: every approved, not reversed financial request on the host has a
    journal record (TID, batch, STAN) — or a reversal for it has reached the host."""
    findings = []
    for row in _host_financial(ev):
        if not _standing(row):
            continue
        stan, rrn = _s(row.get("stan")), _s(row.get("rrn")) or "-"
        records = [j for j in ev.journal if _s(j.get("stan")) == stan and _same_batch(j, row)]
        if not records:
            if not _reversal_received(ev, stan):
                findings.append(f"orphan approval: TID {ev.tid} STAN {stan} RRN {rrn} approved on the host, "
                                "absent from the journal, never reversed")
        elif all(_s(j.get("status")) == "voided" for j in records) and _s(row.get("kind")) in DEBIT_KINDS:
            findings.append(f"void missing on the host: TID {ev.tid} STAN {stan} RRN {rrn} voided in the journal, "
                            "still approved on the host")
    return _result("G1", findings)


def check_g2(ev: Evidence) -> InvariantResult:
    """G2 No orphan journal entries: every standing journal record has an approved, not reversed
    request on the host — or is an advice still queued in Q (it will be posted when delivered)."""
    findings = []
    queued = {_s(q.get("stan")) for q in ev.saf_queue}
    host = _host_financial(ev)
    for record in ev.journal:
        if not _journal_standing(record):
            continue
        stan, rrn = _s(record.get("stan")), _s(record.get("rrn")) or "-"
        what = f"{_s(record.get('kind')) or 'record'} {money(_amount(record))}"
        rows = [r for r in host if _s(r.get("stan")) == stan and _same_batch(record, r)]
        approved = [r for r in rows if _standing(r)]
        if not approved:
            if stan in queued:
                continue
            fate = f"{_s(rows[-1].get('status'))} on the host" if rows else "absent from the host ledger"
            findings.append(f"orphan journal entry: TID {ev.tid} STAN {stan} RRN {rrn} ({what}) in the journal, {fate}")
        elif _s(record.get("status")) != "adjusted" and all(_amount(r) != _amount(record) for r in approved):
            findings.append(f"journal and host disagree: TID {ev.tid} STAN {stan} RRN {rrn} journal {what}, "
                            f"host {money(_amount(approved[0]))}")
    return _result("G2", findings)


def check_g3(ev: Evidence) -> InvariantResult:
    """G3 No double charge: per intended purchase at most one net debit on the host (standing
    debits minus standing refunds)."""
    findings = []
    host = _host_financial(ev)
    for intent, stans in sorted(ev.intents.items()):
        wanted = set(stans)
        rows = [r for r in host if _s(r.get("stan")) in wanted and _standing(r)]
        debits = [r for r in rows if _s(r.get("kind")) in DEBIT_KINDS]
        refunds = [r for r in rows if _s(r.get("kind")) in CREDIT_KINDS]
        if len(debits) - len(refunds) > 1:
            listed = ", ".join(f"STAN {_s(r.get('stan'))} RRN {_s(r.get('rrn')) or '-'} {money(_amount(r))}"
                               for r in debits)
            findings.append(f"double charge: intent {intent} debited {len(debits)} times on the host "
                            f"(TID {ev.tid}: {listed})")
    return _result("G3", findings)


def check_g4(ev: Evidence) -> InvariantResult:
    """G4 Settlement equality: at batch close terminal totals == host totals; batch numbers go up
    by exactly 1 on both sides; each record uploaded at most once."""
    findings: list[str] = []
    settlements = [r for r in ev.settlements if _s(r.get("tid")) == ev.tid]
    # --- totals of every batch the terminal closed, against the host's last word on it
    for closed in ev.closed_batches:
        batch = _s(closed.get("batch"))
        rows = [r for r in settlements if _s(r.get("batch")) == batch]
        if not rows:
            findings.append(f"batch never settled on the host: TID {ev.tid} batch {batch} closed on the terminal "
                            f"({_totals_text(closed)}), no settlement on the host")
            continue
        last = rows[-1]
        host_totals = last.get("host_totals") or {}
        if _s(last.get("result")) not in CLOSED_RESULTS:
            findings.append(f"batch closed without agreement: TID {ev.tid} batch {batch} closed on the terminal "
                            f"({_totals_text(closed)}), the host's last answer was {_s(last.get('result')) or '?'} "
                            f"(rc {_s(last.get('rc')) or '?'}, host {_totals_text(host_totals)})")
        elif _totals_key(host_totals) != _totals_key(closed):
            findings.append(f"settlement totals differ: TID {ev.tid} batch {batch} terminal {_totals_text(closed)}, "
                            f"host {_totals_text(host_totals)}")
    # --- batch numbers: +1 per close on the terminal ...
    numbers = [_s(c.get("batch")) for c in ev.closed_batches]
    findings += _batch_steps(numbers, "terminal", ev.tid)
    current = _s(ev.counters.get("batch"))
    if numbers and current.isdigit() and numbers[-1].isdigit() and int(current) != int(numbers[-1]) + 1:
        findings.append(f"batch number not advanced: TID {ev.tid} terminal batch is {current} after closing "
                        f"{numbers[-1]}, expecting {int(numbers[-1]) + 1:06d}")
    # ... and on the host: each batch closed once, in steps of 1
    host_closed = [_s(r.get("batch")) for r in settlements if _s(r.get("result")) in CLOSED_RESULTS]
    for batch, times in Counter(host_closed).items():
        if times > 1:
            findings.append(f"batch closed {times} times on the host: TID {ev.tid} batch {batch}")
    findings += _batch_steps(list(dict.fromkeys(host_closed)), "host", ev.tid)
    # --- uploads: never again once acknowledged (wire), never twice in the host's upload set
    findings += _uploads_after_acknowledgement(ev)
    for (batch, stan), times in Counter((_s(u.get("batch")), _s(u.get("stan"))) for u in ev.uploads
                                        if _s(u.get("tid")) in ("", ev.tid)).items():
        if times > 1:
            findings.append(f"record uploaded {times} times: TID {ev.tid} batch {batch} STAN {stan} "
                            "in the host's upload set")
    return _result("G4", findings)


def _batch_steps(numbers: list[str], side: str, tid: str) -> list[str]:
    out = []
    for before, after in itertools.pairwise(numbers):
        if before.isdigit() and after.isdigit() and int(after) != int(before) + 1:
            out.append(f"batch number skipped on the {side}: TID {tid} batch {after} closed after {before}, "
                       f"expecting {int(before) + 1:06d}")
    return out


def _upload_records(message: Mapping[str, str], family: str, batch: str) -> list[tuple[str, str]]:
    """(batch, original STAN) of the records one 0320 carries (none for the CUP end message)."""
    if family == "cup":
        f60 = _s(message.get("60"))
        if f60[8:11] != "201":
            return []
        f48 = _s(message.get("48"))
        count = int(f48[:2]) if f48[:2].isdigit() else 0
        return [(f60[2:8], f48[2 + i * 40 + 2: 2 + i * 40 + 8]) for i in range(count)]
    return [(batch, _s(message.get("60"))[4:10])]


def _uploads_after_acknowledgement(ev: Evidence) -> list[str]:
    findings = []
    batch = ""
    acknowledged: set[tuple[str, str]] = set()
    in_flight: dict[str, list[tuple[str, str]]] = {}
    for event in ev.trace:
        message = event.message or {}
        mti = _s(message.get("t"))
        if event.kind == "sent" and mti == "0500":
            batch = _s(message.get("60"))[:6] if ev.family == "intl" else _s(message.get("60"))[2:8]
        elif event.kind == "sent" and mti == "0320":
            records = _upload_records(message, ev.family, batch)
            for record in records:
                if record in acknowledged:
                    findings.append(f"record uploaded again after the host acknowledged it: TID {ev.tid} "
                                    f"batch {record[0]} STAN {record[1]}")
            in_flight[_s(message.get("11"))] = records
        elif event.kind == "received" and mti == "0330" and event.matched is not False \
                and _s(message.get("39")) == "00":
            acknowledged.update(in_flight.pop(_s(message.get("11")), []))
    return findings


def check_g5(ev: Evidence) -> InvariantResult:
    """G5 Ordering: no reversal owed when a 0100/0200 or a 0500 is sent; no advice queued when a
    0500 is sent; the first message after a crash is a reversal if one was owed.

    A reversal is owed for a reversible request that got no matching answer, for an approval whose
    MAC failed, and for every STAN in a status snapshot of R; it is cleared by a reversal answer in
    :attr:`Evidence.final_reversal_codes`, or when a snapshot of R no longer holds a reversal the
    terminal has sent at least once (cleared or parked for manual follow-up).  Advices queued come from status snapshots of Q and leave
    it when their 0220/0221 is answered 00.
    """
    findings: list[str] = []
    owed: dict[str, str] = {}
    attempted: set[str] = set()  # STANs a reversal was sent for
    queued: set[str] = set()
    outstanding: dict[str, Mapping[str, str]] = {}
    after_crash = False

    def end_open_exchanges() -> None:
        for stan, request in list(outstanding.items()):
            if _is_reversible_request(request, ev.family):
                owed.setdefault(stan, f"no answer to its {request.get('t')}")
            outstanding.pop(stan)

    for event in ev.trace:
        message = event.message or {}
        mti, stan = _s(message.get("t")), _s(message.get("11"))
        if event.kind == "status":
            # A reversal the terminal tried and no longer holds was cleared or parked for manual
            # follow-up (the C40 fix); one it never tried and never held (PAX window) stays owed.
            for resolved in [s for s in owed if s in attempted and s not in event.pending_reversals]:
                owed.pop(resolved)
            for pending in event.pending_reversals:
                owed.setdefault(pending, "pending in the terminal")
            queued = set(event.saf_queue)
        elif event.kind == "crash":
            end_open_exchanges()
            after_crash = True
        elif event.kind == "sent":
            end_open_exchanges()
            owed_text = "; ".join(f"STAN {s}, {why}" for s, why in owed.items())
            if after_crash and owed and mti not in REVERSAL_MTIS:
                findings.append(f"first message after the restart was {mti} STAN {stan}, expecting the reversal owed "
                                f"for {owed_text} (TID {ev.tid})")
            if mti in ("0100", "0200") and owed:
                findings.append(f"{mti} STAN {stan} sent while a reversal was owed for {owed_text} (TID {ev.tid})")
            if mti == "0500":
                if owed:
                    findings.append(f"0500 STAN {stan} sent while a reversal was owed for {owed_text} (TID {ev.tid})")
                if queued:
                    findings.append(f"0500 STAN {stan} sent while advices were queued: "
                                    f"{', '.join(f'STAN {s}' for s in sorted(queued))} (TID {ev.tid})")
            after_crash = False
            if mti in REVERSAL_MTIS:
                attempted.add(stan)
            outstanding[stan] = message
        elif event.kind == "received" and event.matched is not False:
            request = outstanding.get(stan)
            if request is None or response_mti(_s(request.get("t"))) != mti:
                continue
            outstanding.pop(stan)
            request_mti, rc = _s(request.get("t")), _s(message.get("39"))
            if request_mti in REVERSAL_MTIS:
                if rc in ev.final_reversal_codes:
                    owed.pop(stan, None)
            elif _is_reversible_request(request, ev.family) and rc == "00" and event.mac_verified is False:
                owed.setdefault(stan, "approval with a bad MAC")
            elif request_mti in ("0220", "0221") and rc == "00":
                queued.discard(stan)
    return _result("G5", findings)


def _is_business_day(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def check_g6(ev: Evidence) -> InvariantResult:
    """G6 Funding: per merchant, payouts paid + pending + held == settled net − fees; value dates
    fall on business days, and no pending payout is past its value date."""
    findings = []
    settled: Counter[str] = Counter()
    for row in ev.authorizations:
        if _s(row.get("mti")) in FINANCIAL_MTIS and row.get("settled") and _standing(row):
            kind = _s(row.get("kind"))
            sign = 1 if kind in DEBIT_KINDS else -1 if kind in CREDIT_KINDS else 0
            settled[_s(row.get("mid"))] += sign * _amount(row)
    by_status: dict[str, Counter[str]] = {status: Counter() for status in (*ACCOUNTED_PAYOUTS, "failed")}
    fees: Counter[str] = Counter()
    for payout in ev.payouts:
        mid, status = _s(payout.get("mid")), _s(payout.get("status"))
        by_status.setdefault(status, Counter())[mid] += _amount(payout)
        if status in ACCOUNTED_PAYOUTS:
            fees[mid] += int(payout.get("fee_minor") or 0)
    for mid in sorted(set(settled) | {_s(p.get("mid")) for p in ev.payouts}):
        found = sum(by_status[s][mid] for s in ACCOUNTED_PAYOUTS)
        expected = settled[mid] - fees[mid]
        if found != expected:
            failed = by_status["failed"][mid]
            findings.append(f"funding gap: MID {mid} settled net {money(settled[mid])}, fees {money(fees[mid])}, "
                            f"expecting {money(expected)} in payouts, found paid {money(by_status['paid'][mid])} + "
                            f"pending {money(by_status['pending'][mid])} + held {money(by_status['held'][mid])}"
                            + (f" (failed {money(failed)})" if failed else ""))
    for payout in ev.payouts:
        text = _s(payout.get("value_date"))
        if not text:
            continue
        try:
            value_date = date.fromisoformat(text[:10])
        except ValueError:
            findings.append(f"payout value date unreadable: MID {_s(payout.get('mid'))} batch "
                            f"{_s(payout.get('batch'))} value date {text!r}")
            continue
        where = f"MID {_s(payout.get('mid'))} batch {_s(payout.get('batch'))} {money(_amount(payout))}"
        if not _is_business_day(value_date, ev.holidays):
            findings.append(f"payout on a non-business day: {where} value date {value_date.isoformat()}")
        status = _s(payout.get("status"))
        if ev.business_date is not None and status == "pending" and value_date < ev.business_date:
            findings.append(f"payout overdue: {where} pending, value date {value_date.isoformat()} passed "
                            f"(business date {ev.business_date.isoformat()})")
        if ev.business_date is not None and status == "paid" and value_date > ev.business_date:
            findings.append(f"payout paid before its value date: {where} value date {value_date.isoformat()} "
                            f"(business date {ev.business_date.isoformat()})")
    return _result("G6", findings)


def _describe(counter: Counter[tuple[Any, ...]]) -> str:
    items = []
    for key, n in sorted(counter.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        text = " ".join(money(k) if isinstance(k, int) else str(k) for k in key)
        items.append(text + (f" x{n}" if n > 1 else ""))
    return ", ".join(items) or "none"


def _end_state(ev: Evidence) -> dict[str, Counter[tuple[Any, ...]]]:
    return {
        "host approvals": Counter((_s(r.get("kind")), _amount(r)) for r in _host_financial(ev) if _standing(r)),
        "journal records": Counter((_s(j.get("kind")), _amount(j), _s(j.get("status")) or "approved")
                                   for j in ev.journal),
        "payouts": Counter((_s(p.get("status")), _amount(p)) for p in ev.payouts),
        "closed batches": Counter((_totals_text(c),) for c in ev.closed_batches),
        "host settlements": Counter((_s(r.get("result")),) for r in ev.settlements
                                    if _s(r.get("tid")) == ev.tid and _s(r.get("result")) in CLOSED_RESULTS),
        "terminal queues": Counter({("pending reversals",): len(ev.pending_reversals),
                                    ("queued advices",): len(ev.saf_queue),
                                    (f"settlement {ev.settlement_state}",): 1}),
    }


def check_g7(ev: Evidence) -> InvariantResult:
    """G7 Restart idempotency: the end state (host approvals, journal, payouts, closed batches,
    terminal queues) equals that of the uninterrupted run, reversed requests aside."""
    if ev.uninterrupted is None:
        return InvariantResult(id="G7", holds=True, findings=[], applicable=False)
    findings = []
    ours, theirs = _end_state(ev), _end_state(ev.uninterrupted)
    for what in ours:
        extra, missing = ours[what] - theirs[what], theirs[what] - ours[what]
        if extra or missing:
            findings.append(f"{what} differ from the uninterrupted run: extra {_describe(extra)}; "
                            f"missing {_describe(missing)} (TID {ev.tid})")
    return _result("G7", findings)


def check_g8(ev: Evidence) -> InvariantResult:
    """G8 Protocol hygiene: every answer the terminal acted on matched its request (MTI+10, 11, 41);
    every MAC on such an answer was checked; no financial request was sent twice with one STAN;
    advice repeats use the repeat MTI where the dialect has one."""
    findings: list[str] = []
    financial_sends: Counter[str] = Counter()
    financial_mti: dict[str, str] = {}
    repeated_once: set[tuple[str, str]] = set()
    open_requests: list[Mapping[str, str]] = []
    for event in ev.trace:
        message = event.message or {}
        mti, stan, tid = _s(message.get("t")), _s(message.get("11")), _s(message.get("41"))
        if event.kind == "sent":
            if mti in ("0100", "0200"):
                financial_sends[stan] += 1
                financial_mti[stan] = mti
            base = next((orig for orig, repeat in ev.repeat_mtis.items() if mti in (orig, repeat)), None)
            if base is not None:
                key = (base, stan)
                if key in repeated_once and mti == base:
                    findings.append(f"advice retransmitted without the repeat MTI: {mti} STAN {stan} sent again as "
                                    f"{mti}, expecting {ev.repeat_mtis[base]} (TID {tid})")
                repeated_once.add(key)
            open_requests.append(message)
        elif event.kind == "received":
            expected = next((r for r in reversed(open_requests) if _answers(message, r)), None)
            if event.matched is True and expected is None and open_requests:
                request = open_requests[-1]
                findings.append(f"answer taken without matching: {mti} STAN {stan} TID {tid or '-'} accepted for "
                                f"{_s(request.get('t'))} STAN {_s(request.get('11'))} TID {_s(request.get('41'))}")
                expected = request
            if expected is not None and event.matched is not False:
                open_requests.remove(expected)
                if "64" in message and event.mac_verified is None:
                    findings.append(f"MAC not verified: {mti} STAN {stan} TID {tid} carries field 64, "
                                    "the terminal did not check it")
    for stan, times in sorted(financial_sends.items()):
        if times > 1:
            findings.append(f"financial request retransmitted: {financial_mti[stan]} STAN {stan} sent {times} times "
                            f"(TID {ev.tid})")
    return _result("G8", findings)


def _answers(response: Mapping[str, str], request: Mapping[str, str]) -> bool:
    """Response MTI = request MTI + 10, same STAN (11) and TID (41) (docs/domain.md#requestresponse-matching-and-timers)."""
    try:
        wanted = response_mti(_s(request.get("t")))
    except ValueError:
        return False
    return (_s(response.get("t")) == wanted and _s(response.get("11")) == _s(request.get("11"))
            and _s(response.get("41")) == _s(request.get("41")))


#: Invariant id -> (title, check).
INVARIANTS: Mapping[str, tuple[str, Callable[[Evidence], InvariantResult]]] = MappingProxyType({
    "G1": ("No orphan approvals", check_g1),
    "G2": ("No orphan journal entries", check_g2),
    "G3": ("No double charge", check_g3),
    "G4": ("Settlement equality", check_g4),
    "G5": ("Ordering", check_g5),
    "G6": ("Funding", check_g6),
    "G7": ("Restart idempotency", check_g7),
    "G8": ("Protocol hygiene", check_g8),
})


def check_all(ev: Evidence, ids: Iterable[str] = tuple(INVARIANTS)) -> list[InvariantResult]:
    """Run the named invariants (default: all eight) in order.

    Raises:
        ValueError: an unknown invariant id.
    """
    out = []
    for invariant in ids:
        if invariant not in INVARIANTS:
            raise ValueError(f"Unknown invariant {invariant!r}, expecting one of {', '.join(INVARIANTS)}")
        out.append(INVARIANTS[invariant][1](ev))
    return out
