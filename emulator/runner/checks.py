"""The expectations of a scenario file checked against what a run showed: pure functions over a
:class:`RunView`, testable without a host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from emulator.invariants import Evidence, host_net_minor
from emulator.runner.results import CheckResult, StepRecord, TraceItem, _is_response, _money_text
from emulator.terminal import (
    Books,
)
from specs.scenario import (
    Check,
    MessagePattern,
    RowCheck,
)

# ============================================================================ checks


@dataclass
class RunView:
    """What the expectations of a run look at, at one moment."""

    family: str
    tid: str
    trace: list[TraceItem]
    steps: dict[str, StepRecord]
    authorizations: list[dict[str, Any]]
    settlements: list[dict[str, Any]]
    payouts: list[dict[str, Any]]
    host_journal: list[dict[str, Any]]
    books: Books
    closed_batches: list[dict[str, Any]]
    business_date: date | None
    holidays: frozenset[date]
    final_reversal_codes: tuple[str, ...]

    def journal_rows(self) -> list[dict[str, Any]]:
        rows = []
        for settled, records in ((False, self.books.records), (True, self.books.history)):
            for r in records:
                rows.append({"stan": r.stan, "batch": r.batch, "kind": r.kind,
                             "status": "adjusted" if r.tip_minor and r.status == "approved" else r.status,
                             "invoice": r.invoice, "rrn": r.rrn, "auth_code": r.auth_code,
                             "operator": getattr(r, "operator", None), "receipt_pending": r.receipt_pending,
                             "settled": settled, "amount_minor": r.amount_minor,
                             "entry_mode": getattr(r, "entry_mode", None), "tid": self.tid})
        return rows

    def reversal_rows(self) -> list[dict[str, Any]]:
        rows = [{"stan": r.stan, "reason": r.reason, "kind": r.kind, "parked": False,
                 "amount_minor": int(r.message.get("4", "0") or 0), "tid": self.tid} for r in self.books.reversals]
        rows += [{"stan": stan, "reason": why, "kind": None, "parked": True, "amount_minor": None, "tid": self.tid}
                 for what, stan, why in self.books.parked if what == "reversal"]
        return rows

    def saf_rows(self) -> list[dict[str, Any]]:
        return [{"stan": a.stan, "kind": a.kind, "mti": a.message.get("t"), "attempts": a.attempts,
                 "amount_minor": int(a.message.get("4", "0") or 0), "tid": self.tid} for a in self.books.advices]

    def table(self, name: str) -> list[dict[str, Any]]:
        return {"authorizations": lambda: self.authorizations, "settlements": lambda: self.settlements,
                "payouts": lambda: self.payouts, "journal": self.journal_rows, "reversals": self.reversal_rows,
                "saf": self.saf_rows}[name]()

    def intents(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for record in self.steps.values():
            if record.intent and record.stan:
                out.setdefault(record.intent, []).append(record.stan)
        return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}

    def terminal_state(self) -> dict[str, Any]:
        b = self.books
        return {"pending_reversals": len(b.reversals),
                "parked_reversals": sum(1 for what, _, _ in b.parked if what == "reversal"),
                "saf_queue": len(b.advices), "open_records": len(b.records),
                "receipt_pending": sum(1 for r in (*b.records, *b.history) if r.receipt_pending),
                "batches_closed": len(self.closed_batches), "signed_on": b.signed_on,
                "settlement_state": "idle" if b.settlement is None else "pending",
                "batch": f"{b.batch:06d}", "stan": f"{b.stan:06d}",
                "parked": [{"what": w, "stan": s, "why": y} for w, s, y in b.parked]}

    def evidence(self) -> Evidence:
        b = self.books
        return Evidence(
            tid=self.tid, family=self.family, journal=tuple(self.journal_rows()),
            pending_reversals=tuple(r for r in self.reversal_rows() if not r["parked"]),
            saf_queue=tuple(self.saf_rows()),
            settlement_state="idle" if b.settlement is None else b.settlement.stage.value,
            closed_batches=tuple(self.closed_batches), counters={"batch": f"{b.batch:06d}"},
            authorizations=tuple(self.authorizations), settlements=tuple(self.settlements),
            payouts=tuple(self.payouts),
            uploads=tuple({"tid": u.get("tid"), "batch": u.get("batch"), "stan": u.get("original_stan")}
                          for row in self.settlements for u in row.get("uploads") or ()),
            host_journal=tuple({**e, "message": e.get("request") or {}} for e in self.host_journal),
            trace=tuple(t.as_event() for t in self.trace), intents=self.intents(),
            final_reversal_codes=self.final_reversal_codes, business_date=self.business_date, holidays=self.holidays)


def _pattern_text(p: MessagePattern) -> str:
    parts = [p.mti]
    parts += [f"{k}={v}" for k, v in p.fields.items()]
    if p.stan_of:
        parts.append(f"STAN of {p.stan_of}")
    if p.during:
        parts.append(f"during {p.during}")
    return " ".join(parts)


def _matching(view: RunView, p: MessagePattern) -> list[TraceItem]:
    direction = "received" if _is_response(p.mti) else "sent"
    stan = None
    if p.stan_of is not None:
        record = view.steps.get(p.stan_of)
        stan = record.stan if record else None
        if stan is None:
            return []
    out = []
    for item in view.trace:
        if item.kind != direction or item.message is None:
            continue
        if not p.matches(item.message):
            continue
        if stan is not None and item.message.get("11") != stan:
            continue
        if p.during is not None and item.step != p.during:
            continue
        out.append(item)
    return out


def _where_matches(view: RunView, table: str, row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for key, want in where.items():
        if key in ("step", "intent"):
            if key == "step":
                record = view.steps.get(want)
                stans = {record.stan} if record and record.stan else set()
            else:
                stans = set(view.intents().get(want, ()))
            if str(row.get("stan")) not in stans:
                return False
            continue
        have = row.get(key)
        if want is None:
            if have not in (None, ""):
                return False
        elif isinstance(want, bool):
            if bool(have) != want:
                return False
        elif have is None or str(have) != str(want):
            return False
    return True


def _describe_where(check: RowCheck) -> str:
    where = ", ".join(f"{k}={'null' if v is None else v}" for k, v in check.where.items())
    return f"{check.table}" + (f" where {where}" if where else "")


def evaluate_check(check: Check, view: RunView, family: str) -> list[CheckResult]:
    """Each observation of ``check`` against ``view`` (patterns of another family are left out)."""
    out: list[CheckResult] = []
    for oc in check.outcomes:
        if oc.family and oc.family != family:
            continue
        record = view.steps.get(oc.step)
        got = record.outcome if record else None
        ok = got in oc.outcome and (oc.rc is None or (record is not None and record.rc == oc.rc))
        wanted = "/".join(oc.outcome) + (f" rc {oc.rc}" if oc.rc else "")
        seen = f"{got or 'not run'}" + (f" rc {record.rc}" if record and record.rc else "")
        out.append(CheckResult(what=f"step {oc.step} ends {wanted}", passed=ok,
                               detail=f"found {seen}" + (f" ({record.text})" if record and record.text and not ok else "")))
    for p in check.messages_present:
        if p.family and p.family != family:
            continue
        found = _matching(view, p)
        ok = len(found) == p.count if p.count is not None else bool(found)
        how_many = f"exactly {p.count}" if p.count is not None else "at least one"
        out.append(CheckResult(what=f"{how_many} {_pattern_text(p)} on the wire", passed=ok, detail=f"found {len(found)}"))
    for p in check.messages_missing:
        if p.family and p.family != family:
            continue
        found = _matching(view, p)
        out.append(CheckResult(what=f"no {_pattern_text(p)} on the wire", passed=not found,
                               detail=f"found {len(found)}" + (f" (STAN {found[0].message.get('11')})"
                                                               if found and found[0].message else "")))
    if check.messages_in_order:
        patterns = [p for p in check.messages_in_order if not p.family or p.family == family]
        position, ok, missing = 0, True, ""
        for p in patterns:
            candidates = [item.seq for item in _matching(view, p) if item.seq > position]
            if not candidates:
                ok, missing = False, _pattern_text(p)
                break
            position = min(candidates)
        out.append(CheckResult(what="in order: " + " -> ".join(_pattern_text(p) for p in patterns), passed=ok,
                               detail=f"{missing} not found after the previous one" if not ok else ""))
    received = [t.message for t in view.trace if t.kind == "received" and t.message is not None]
    for cs in check.codes_seen:
        if cs.family and cs.family != family:
            continue
        ok = any(m.get("39") == cs.code for m in received)
        codes = sorted({m.get("39", "") for m in received if m.get("39")})
        out.append(CheckResult(what=f"response code {cs.code} seen", passed=ok, detail=f"seen {', '.join(codes)}"))
    for rc in check.ledger:
        rows = [r for r in view.table(rc.table) if _where_matches(view, rc.table, r, rc.where)]
        problems = []
        if rc.count is not None and len(rows) != rc.count:
            problems.append(f"expected {rc.count} rows, found {len(rows)}")
        for column, want_minor in rc.sums_minor.items():
            sum_minor = sum(int(r.get(column) or 0) for r in rows)
            if sum_minor != want_minor:
                problems.append(f"sum of {column[:-6]} {_money_text(sum_minor)}, expected {_money_text(want_minor)}")
        what = f"{_describe_where(rc)}: " + ", ".join(
            ([f"{rc.count} rows"] if rc.count is not None else [])
            + [f"{c[:-6]} {_money_text(v)}" for c, v in rc.sums_minor.items()])
        out.append(CheckResult(what=what, passed=not problems, detail="; ".join(problems)))
    state = view.terminal_state()
    for name, want in check.terminal.items():
        got = state.get(name)
        out.append(CheckResult(what=f"terminal {name} is {want}", passed=got == want, detail=f"found {got}"))
    if check.host_net_minor:
        evidence = Evidence(tid=view.tid, family=view.family, authorizations=tuple(view.authorizations),
                            intents=view.intents())
        for intent, net_minor in check.host_net_minor.items():
            found_minor = host_net_minor(evidence, intent)
            out.append(CheckResult(what=f"host net for {intent} is {_money_text(net_minor)}",
                                   passed=found_minor == net_minor, detail=f"found {_money_text(found_minor)}"))
    return out
