"""``pos-terminal probe``: what a host does on each conformance check, judged from the exchanges alone.

This module is pure: the checks' exchanges are recorded by :mod:`emulator.prober` (the only part
that talks to the host), and everything here works on those records — the catalogue of checks and
their default expectations, the user's expectations file, the verdict of each check, the response
time summary, the console table and ``junit.xml``.  Nothing here needs a host, so every verdict
can be tested on hand-made records.

A probe never uses a control API (a real acquirer host has none): everything it concludes comes
from the host's answers — to the check's own requests, to the reversal that undoes what the check
created, and to the settlement that closes the check's batch (the host's totals say whether it
counted a debit once, twice or not at all).

Expectations (``--expect FILE``, YAML): a mapping of check name to the keys below; a key left out
keeps its default.  Response codes are lists of 2-character codes; ``same`` in ``duplicate.rc``
means "the first answer again (same response code, RRN and approval code)".

>>> e = load_expectations({"unknown_reversal": {"rc": ["25"]}}, source="probe.yaml")
>>> e["unknown_reversal"]["rc"], e["reversal"]["rc"]
(['25'], ['00'])
>>> load_expectations({"unknown_reversal": {"codes": ["25"]}}, source="probe.yaml")
Traceback (most recent call last):
...
emulator.probe.ExpectationError: probe.yaml: unknown_reversal.codes is not an expectation of unknown_reversal, expecting one of rc
"""

from __future__ import annotations

import copy
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from specs.codes import APPROVED, DUPLICATE_TRANSMISSION, MAC_ERROR, RECONCILE_ERROR

SCHEMA = "pos-harness/probe/1"


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check of the suite: its name, what it asks of the host, its default expectation."""

    name: str
    title: str
    expect: Mapping[str, Any]


#: The checks, in the order they run.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("signon", "sign-on: working keys downloaded and their check values verify",
              {"rc": ["00"], "keys_verified": True}),
    CheckSpec("echo", "echo test answered", {"rc": ["00"]}),
    CheckSpec("duplicate", "the same 0200 twice (same STAN, TID, amount): 94 or the same answer, never a second debit",
              {"rc": [DUPLICATE_TRANSMISSION, "same"], "second_debit": False}),
    CheckSpec("reversal", "reversal of an approved sale: 00, the repeat (0401) the same answer, the sale undone",
              {"rc": ["00"], "repeat": "same", "undone": True}),
    CheckSpec("unknown_reversal", "reversal of an original the host never saw: 25, 12 or 00",
              {"rc": ["25", "12", "00"]}),
    CheckSpec("late_reversal", "reversal that arrives after a delay: 00, the sale undone",
              {"rc": ["00"], "undone": True, "delay_seconds": 1.0}),
    CheckSpec("bad_mac", "a sale whose MAC does not verify: A0, nothing posted", {"rc": [MAC_ERROR]}),
    CheckSpec("missing_mac", "a sale without a MAC from a terminal holding working keys: A0, nothing posted",
              {"rc": [MAC_ERROR]}),
    CheckSpec("stale_stan", "a new sale reusing the STAN of an earlier one: a new transaction (00) or 94, never "
                            "the earlier one's answer", {"rc": ["00", DUPLICATE_TRANSMISSION]}),
    CheckSpec("advice", "advice 0220 then its repeat 0221: both 00, posted once", {"rc": ["00"], "posted_once": True}),
    CheckSpec("settlement", "settlement with totals off by one: unbalanced (95 / 对账应答码 2), batch upload, closed",
              {"first": "unbalanced", "closed": True}),
    CheckSpec("latency", "response time per message type (p50/p99) and time-outs",
              {"p99_seconds": 5.0, "timeouts": 0}),
)
CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
_SPECS = {c.name: c for c in CHECKS}


class ExpectationError(ValueError):
    """An expectations file that names an unknown check or key, or holds a value of the wrong kind."""


def default_expectations() -> dict[str, dict[str, Any]]:
    return {c.name: copy.deepcopy(dict(c.expect)) for c in CHECKS}


def _codes(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = f"{item:02d}" if isinstance(item, int) and not isinstance(item, bool) else str(item)
        if text != "same" and (len(text) != 2 or not text.isalnum()):
            raise ExpectationError(f"{where} holds {item!r}, expecting 2-character response codes such as 00 or A0")
        out.append(text.upper() if text != "same" else text)
    return out


def load_expectations(data: Any, *, source: str) -> dict[str, dict[str, Any]]:
    """The default expectations with the user's overrides (the parsed YAML of ``--expect``).

    Raises:
        ExpectationError: not a mapping, an unknown check or key, or a value of the wrong kind
            (the message names the file, the key and what was expected).
    """
    out = default_expectations()
    if data is None:
        return out
    if not isinstance(data, Mapping):
        raise ExpectationError(f"{source}: holds a {type(data).__name__}, expecting a mapping of check names "
                               f"({', '.join(CHECK_NAMES)}) to expectations")
    for name, given in data.items():
        if name not in _SPECS:
            raise ExpectationError(f"{source}: {name!r} is not a check, expecting one of {', '.join(CHECK_NAMES)}")
        if not isinstance(given, Mapping):
            raise ExpectationError(f"{source}: {name} holds {given!r}, expecting a mapping such as "
                                   f"{dict(_SPECS[name].expect)}")
        for key, value in given.items():
            where = f"{source}: {name}.{key}"
            default = _SPECS[name].expect.get(key, _MISSING)
            if default is _MISSING:
                raise ExpectationError(f"{where} is not an expectation of {name}, expecting one of "
                                       f"{', '.join(_SPECS[name].expect)}")
            if key == "rc":
                out[name][key] = _codes(value, where)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ExpectationError(f"{where} holds {value!r}, expecting true or false")
                out[name][key] = value
            elif isinstance(default, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ExpectationError(f"{where} holds {value!r}, expecting a number of 0 or more")
                out[name][key] = type(default)(value)
            else:
                choices = {"repeat": ("same", "any"), "first": ("unbalanced", "balanced")}[key]
                if value not in choices:
                    raise ExpectationError(f"{where} holds {value!r}, expecting one of {', '.join(choices)}")
                out[name][key] = value
    return out


_MISSING = object()


# ============================================================================ what was recorded


@dataclass(kw_only=True)
class Exchange:
    """One request the probe sent and what came back, masked.

    ``outcome``: ``answered`` (a matching response), ``timeout``, ``link_lost``, ``unreadable``,
    ``connect_failed``.  ``mac``: how the request was signed (``good``, ``bad``, ``none``).
    """

    step: str
    request: dict[str, str]
    response: dict[str, str] | None = None
    outcome: str = "answered"
    seconds: float | None = None
    at_ms: float = 0.0
    mac: str = "none"
    mac_verified: bool | None = None
    detail: str = ""
    strays: list[dict[str, str]] = field(default_factory=list)

    @property
    def rc(self) -> str | None:
        return self.response.get("39") if self.response else None

    @property
    def answered(self) -> bool:
        return self.outcome == "answered" and self.response is not None

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "request": self.request, "response": self.response, "outcome": self.outcome,
                "rc": self.rc, "seconds": None if self.seconds is None else round(self.seconds, 4),
                "at_ms": round(self.at_ms, 1), "mac": self.mac, "mac_verified": self.mac_verified,
                "detail": self.detail, "strays": self.strays}


@dataclass(kw_only=True)
class Settlement:
    """How a check's batch was settled: the first answer, the upload, the closing answer."""

    batch: str
    first: str  # balanced | unbalanced | declined | no_answer
    first_rc: str | None = None
    host_totals: str = ""
    #: CUP 对账应答码 of the first 0510 (1 balanced, 2 unbalanced, 3 error); empty for INTL.
    flag: str = ""
    uploaded: int = 0
    close_rc: str | None = None
    closed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "first": self.first, "first_rc": self.first_rc, "flag": self.flag,
                "host_totals": self.host_totals,
                "uploaded": self.uploaded, "close_rc": self.close_rc, "closed": self.closed}

    def text(self) -> str:
        said = ", ".join([*([f"rc {self.first_rc}"] if self.first_rc else []), *([f"对账应答码 {self.flag}"] if self.flag
                                                                                  else [])])
        parts = [f"batch {self.batch} {self.first}" + (f" ({said})" if said else "")]
        if self.uploaded or self.first == "unbalanced":
            parts.append(f"{self.uploaded} uploaded")
        parts.append("closed" if self.closed else "NOT closed" + (f" (rc {self.close_rc})" if self.close_rc else ""))
        return ", ".join(parts)


@dataclass(kw_only=True)
class CheckRecord:
    """Everything one check did: its exchanges, the settlement that closed its batch, what it
    cleaned up and what it could not (``left_behind``), and why it could not run (``error``)."""

    name: str
    exchanges: list[Exchange] = field(default_factory=list)
    settlement: Settlement | None = None
    cleanup: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    error: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    def step(self, name: str) -> Exchange | None:
        return next((e for e in self.exchanges if e.step == name), None)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    name: str
    title: str
    status: str  # pass | fail | error
    summary: str
    findings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "pass"


# ============================================================================ judging


def _said(exchange: Exchange | None) -> str:
    if exchange is None:
        return "not sent"
    if not exchange.answered:
        return exchange.outcome.replace("_", " ") + (f" ({exchange.detail})" if exchange.detail else "")
    return f"rc {exchange.rc}"


def _rc_ok(exchange: Exchange | None, codes: Sequence[str]) -> bool:
    return exchange is not None and exchange.answered and exchange.rc in codes


def _settled_to(record: CheckRecord, findings: list[str], *, what: str) -> bool | None:
    """True when the check's settlement was balanced at once (the host counts what we count)."""
    s = record.settlement
    if s is None:
        findings.append(f"no settlement to confirm {what}")
        return None
    if s.first in ("declined", "no_answer"):
        findings.append(f"the settlement that should confirm {what} was {s.first.replace('_', ' ')}"
                        + (f" (rc {s.first_rc})" if s.first_rc else ""))
        return None
    return s.first == "balanced"


#: Checks built on an approved sale: without one there is nothing to judge.
_NEEDS_SALE = frozenset({"duplicate", "reversal", "late_reversal", "settlement"})


def _needs_sale(record: CheckRecord) -> str | None:
    sale = record.step("sale")
    if sale is None or not _rc_ok(sale, [APPROVED]):
        return f"the sale the check needs was not approved ({_said(sale)})"
    return None


def judge(record: CheckRecord, expect: Mapping[str, Any]) -> Verdict:
    """The verdict of one recorded check against its expectation."""
    spec = _SPECS[record.name]
    if record.error:
        return Verdict(name=record.name, title=spec.title, status="error", summary=record.error,
                       findings=(record.error,))
    findings: list[str] = []
    problem = _needs_sale(record) if record.name in _NEEDS_SALE else None
    if problem:
        findings.append(problem)
        summary = problem
    else:
        summary = _JUDGES[record.name](record, expect, findings)
    status = "fail" if findings else "pass"
    if record.name != "latency" and any(e.outcome == "connect_failed" for e in record.exchanges):
        status = "error"
    return Verdict(name=record.name, title=spec.title, status=status, summary=summary, findings=tuple(findings))


def _judge_signon(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    rc = r.facts.get("rc")
    if rc not in e["rc"]:
        findings.append(f"sign-on answered {r.facts.get('said', rc)}, expecting rc {'/'.join(e['rc'])}")
    if e["keys_verified"] and not r.facts.get("keys_loaded"):
        findings.append("no working keys loaded: " + str(r.facts.get("text", "the answer carried no key block")))
    return f"rc {rc}; keys " + ("loaded, check values verified" if r.facts.get("keys_loaded") else "not loaded")


def _judge_echo(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    rc = r.facts.get("rc")
    if rc not in e["rc"]:
        findings.append(f"echo answered {r.facts.get('said', rc)}, expecting rc {'/'.join(e['rc'])}")
    return f"rc {rc}"


def _judge_duplicate(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    first, again = r.step("sale"), r.step("duplicate")
    assert first is not None and first.response is not None
    same = (again is not None and again.answered and again.response is not None and again.rc == first.rc
            and all(again.response.get(k) == first.response.get(k) for k in ("37", "38")))
    accepted = [c for c in e["rc"] if c != "same"]
    ok = _rc_ok(again, accepted) or ("same" in e["rc"] and same)
    said = _said(again) + (" (the same answer)" if same else "")
    if not ok:
        expected = " or ".join([*(f"rc {c}" for c in accepted), *(["the same answer"] if "same" in e["rc"] else [])])
        findings.append(f"the duplicate 0200 was answered {said}, expecting {expected}")
        if again is not None and again.answered and again.rc == APPROVED and not same:
            findings.append("it was approved as a new transaction (RRN/approval code differ from the first answer)")
    balanced = _settled_to(r, findings, what="a single debit")
    second = balanced is False
    if second and not e["second_debit"]:
        findings.append("after the sale was reversed the host still counted a debit in the batch: the duplicate "
                        "was posted as a second debit")
    return f"duplicate {said}; " + ("second debit" if second else "one debit" if balanced else "debits unconfirmed")


def _judge_reversal(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    reversal, repeat = r.step("reversal"), r.step("repeat")
    if not _rc_ok(reversal, e["rc"]):
        findings.append(f"the reversal was answered {_said(reversal)}, expecting rc {'/'.join(e['rc'])}")
    if r.name == "reversal" and e["repeat"] == "same" and (repeat is None or not repeat.answered
                                                           or reversal is None or repeat.rc != reversal.rc):
        findings.append(f"the repeat 0401 was answered {_said(repeat)}, expecting the reversal's answer "
                        f"({_said(reversal)})")
    balanced = _settled_to(r, findings, what="the sale was undone")
    if e["undone"] and balanced is False:
        findings.append("the host still counted the sale in its batch after the reversal")
    text = f"reversal {_said(reversal)}"
    if r.name == "reversal":
        text += f", repeat {_said(repeat)}"
    if r.name == "late_reversal":
        text += f" after {r.facts.get('delay_seconds', 0):g} s"
    return text + ("; sale undone" if balanced else "; sale still counted" if balanced is False else "")


def _judge_unknown_reversal(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    reversal = r.step("reversal")
    if not _rc_ok(reversal, e["rc"]):
        findings.append(f"the reversal of an unknown original was answered {_said(reversal)}, expecting rc "
                        f"{'/'.join(e['rc'])}")
    return f"reversal {_said(reversal)}"


def _judge_mac(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    sale = r.step("sale")
    if not _rc_ok(sale, e["rc"]):
        what = "whose MAC does not verify" if r.name == "bad_mac" else "without a MAC"
        findings.append(f"a sale {what} was answered {_said(sale)}, expecting rc {'/'.join(e['rc'])}")
        if _rc_ok(sale, [APPROVED]):
            findings.append("the host approved it (it was reversed afterwards)")
    return f"sale {_said(sale)}"


def _judge_stale_stan(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    sale, earlier = r.step("sale"), r.facts.get("earlier_rrn")
    if not _rc_ok(sale, e["rc"]):
        findings.append(f"a sale reusing STAN {r.facts.get('stan')} was answered {_said(sale)}, expecting rc "
                        f"{'/'.join(e['rc'])}")
    elif sale is not None and sale.rc == APPROVED and earlier and sale.response and sale.response.get("37") == earlier:
        findings.append(f"the host answered with the earlier transaction's RRN {earlier}: it took the new sale "
                        "for the old one")
    return f"sale with STAN {r.facts.get('stan')} {_said(sale)}"


def _judge_advice(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    advice, repeat = r.step("advice"), r.step("repeat")
    for what, exchange in (("the advice 0220", advice), ("its repeat 0221", repeat)):
        if not _rc_ok(exchange, e["rc"]):
            findings.append(f"{what} was answered {_said(exchange)}, expecting rc {'/'.join(e['rc'])}")
    balanced = _settled_to(r, findings, what="the advice was posted once")
    if e["posted_once"] and balanced is False:
        findings.append("the host's totals differ from one posting of the advice: posted twice or not at all")
    return f"0220 {_said(advice)}, 0221 {_said(repeat)}" + ("; posted once" if balanced else
                                                             "; not posted once" if balanced is False else "")


def _judge_settlement(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    s = r.settlement
    if s is None:
        findings.append("no settlement was made")
        return "not settled"
    if s.first != e["first"]:
        findings.append(f"totals off by one were answered {s.first}" + (f" (rc {s.first_rc})" if s.first_rc else "")
                        + f", expecting {e['first']}"
                        + (f" (INTL rc {RECONCILE_ERROR}, CUP 对账应答码 2)" if e["first"] == "unbalanced" else ""))
    if e["closed"] and not s.closed:
        findings.append(f"the batch was not closed after the upload (closing answer {s.close_rc or 'none'})")
    return s.text()


def _judge_latency(r: CheckRecord, e: Mapping[str, Any], findings: list[str]) -> str:
    rows = r.facts.get("per_mti", [])
    for row in rows:
        if row["p99"] is not None and row["p99"] > e["p99_seconds"]:
            findings.append(f"{row['mti']}: p99 {row['p99']:.3f} s, expecting at most {e['p99_seconds']:g} s")
    timeouts = sum(row["timeouts"] for row in rows)
    if timeouts > e["timeouts"]:
        findings.append(f"{timeouts} request(s) without an answer in time, expecting at most {e['timeouts']}")
    return "; ".join(f"{row['mti']} n={row['count']} p50 {_ms(row['p50'])} p99 {_ms(row['p99'])}"
                     + (f" {row['timeouts']} timeout(s)" if row["timeouts"] else "") for row in rows) or "no exchanges"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


_JUDGES = {"signon": _judge_signon, "echo": _judge_echo, "duplicate": _judge_duplicate, "reversal": _judge_reversal,
           "unknown_reversal": _judge_unknown_reversal, "late_reversal": _judge_reversal, "bad_mac": _judge_mac,
           "missing_mac": _judge_mac, "stale_stan": _judge_stale_stan, "advice": _judge_advice,
           "settlement": _judge_settlement, "latency": _judge_latency}


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100).

    >>> percentile([0.1, 0.2, 0.3, 0.4], 50), percentile([0.1, 0.2, 0.3, 0.4], 99), percentile([], 50)
    (0.2, 0.4, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_record(exchanges: Iterable[Exchange]) -> CheckRecord:
    """The ``latency`` check: response times of every answered request per request MTI, and time-outs."""
    per: dict[str, dict[str, Any]] = {}
    for x in exchanges:
        row = per.setdefault(x.request.get("t", "?"), {"times": [], "timeouts": 0})
        if x.answered and x.seconds is not None:
            row["times"].append(x.seconds)
        elif x.outcome == "timeout":
            row["timeouts"] += 1
    rows = [{"mti": mti, "count": len(v["times"]) + v["timeouts"], "p50": percentile(v["times"], 50),
             "p99": percentile(v["times"], 99), "max": max(v["times"]) if v["times"] else None,
             "timeouts": v["timeouts"]} for mti, v in sorted(per.items())]
    return CheckRecord(name="latency", facts={"per_mti": rows})


# ============================================================================ output


def result_data(records: Sequence[CheckRecord], expectations: Mapping[str, Mapping[str, Any]],
                options: Mapping[str, Any]) -> dict[str, Any]:
    """``probe.json``: options, one entry per check (verdict, expectation, exchanges, settlement,
    cleanup, what was left behind) and the summary; every message in it is masked already."""
    checks: list[dict[str, Any]] = []
    for record in records:
        verdict = judge(record, expectations[record.name])
        checks.append({"name": record.name, "title": verdict.title, "status": verdict.status,
                       "summary": verdict.summary, "findings": list(verdict.findings),
                       "expectation": dict(expectations[record.name]),
                       "exchanges": [x.as_dict() for x in record.exchanges],
                       "settlement": record.settlement.as_dict() if record.settlement else None,
                       "cleanup": record.cleanup, "left_behind": record.left_behind, "facts": record.facts})
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", "fail", "error")}
    left = [f"{c['name']}: {item}" for c in checks for item in c["left_behind"]]
    return {"schema": SCHEMA, "options": dict(options), "ok": counts["fail"] == counts["error"] == 0,
            "summary": counts, "left_behind": left, "checks": checks}


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def format_table(data: Mapping[str, Any]) -> str:
    """One line per check: name · verdict · what the host did · cleanup; then what failed and the totals."""
    header = f"{'check':<17} {'verdict':<7} {'what the host did':<70} cleanup"
    lines = [header, "-" * (len(header) + 30)]
    for c in data["checks"]:
        cleanup = "; ".join(c["cleanup"]) or "nothing to undo"
        if c["left_behind"]:
            cleanup = "LEFT BEHIND: " + "; ".join(c["left_behind"])
        lines.append(f"{c['name']:<17} {c['status'].upper():<7} {_clip(c['summary'], 70):<70} {_clip(cleanup, 60)}")
    lines.append("-" * (len(header) + 30))
    for c in data["checks"]:
        for finding in c["findings"]:
            lines.append(f"{c['name']}: {finding}")
    s = data["summary"]
    lines.append(f"{len(data['checks'])} checks: {s['pass']} passed, {s['fail']} failed, {s['error']} could not run"
                 + (f"; LEFT ON THE HOST: {'; '.join(data['left_behind'])}" if data["left_behind"]
                    else "; nothing left on the host"))
    return "\n".join(lines)


def junit_xml(data: Mapping[str, Any]) -> str:
    """JUnit XML: one test case per check; a failed check is a failure, one that could not run an error."""
    suite = ET.Element("testsuite", name="pos-harness.probe")
    for c in data["checks"]:
        seconds = sum(x["seconds"] or 0 for x in c["exchanges"])
        case = ET.SubElement(suite, "testcase", classname="probe", name=f"{c['name']} {c['title']}",
                             time=f"{seconds:.3f}")
        if c["status"] != "pass":
            tag = "failure" if c["status"] == "fail" else "error"
            node = ET.SubElement(case, tag, message=_clip("; ".join(c["findings"]) or c["summary"], 1000))
            node.text = "\n".join(c["findings"])
        out = ET.SubElement(case, "system-out")
        out.text = (f"{c['summary']}\ncleanup: {'; '.join(c['cleanup']) or 'nothing to undo'}"
                    + (f"\nleft behind: {'; '.join(c['left_behind'])}" if c["left_behind"] else ""))
    s = data["summary"]
    suite.set("tests", str(len(data["checks"])))
    suite.set("failures", str(s["fail"]))
    suite.set("errors", str(s["error"]))
    suite.set("skipped", "0")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def ladder_messages(check: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A check's exchanges as the rows the message ladder shows (:func:`emulator.report.ladder`)."""
    rows: list[dict[str, Any]] = []
    for x in check["exchanges"]:
        request = x["request"]
        rows.append({"kind": "sent", "at_ms": x["at_ms"], "step": x["step"], "message": request,
                     "mti": request.get("t"), "stan": request.get("11"), "rc": request.get("39"),
                     "mac": "64" in request, "text": {"bad": "MAC corrupted on purpose",
                                                      "none": "no MAC"}.get(x["mac"], "")})
        for stray in x["strays"]:
            rows.append({"kind": "received", "at_ms": x["at_ms"], "step": x["step"], "message": stray,
                         "mti": stray.get("t"), "stan": stray.get("11"), "rc": stray.get("39"), "matched": False})
        if x["response"] is not None:
            response = x["response"]
            rows.append({"kind": "received", "at_ms": x["at_ms"] + 1000 * (x["seconds"] or 0), "step": x["step"],
                         "message": response, "mti": response.get("t"), "stan": response.get("11"),
                         "rc": response.get("39"), "matched": True, "mac_verified": x["mac_verified"]})
        elif x["outcome"] != "answered":
            rows.append({"kind": x["outcome"], "at_ms": x["at_ms"], "step": x["step"], "text": x["detail"]})
    for item in check["cleanup"]:
        rows.append({"kind": "note", "step": "cleanup", "text": item})
    for item in check["left_behind"]:
        rows.append({"kind": "note", "step": "left behind", "text": item})
    return rows
