"""Reports of the cause-and-fix matrix (the console table, ``matrix.json``, ``junit.xml``,
``index.html``) and the probe's page (:func:`write_probe_reports`); both pages share one style and
one message-ladder macro (``ladder.html``).

Every writer takes the plain data of :meth:`emulator.runner.MatrixResult.as_dict` (so a report can
be rebuilt from a saved ``matrix.json``).  Messages in that data are already masked by the runner
(``specs.masking``, and every PAN the run used wherever it appears, e.g. inside CUP upload field
48); the HTML renderer masks every string it prints once more, so a PAN cannot reach the page.

``matrix.json`` (schema ``pos-harness/matrix/1``)::

    {schema, generated_at, wall_seconds, ok, options, summary: {resolved, passed, failed, outside},
     rows: [{id, title, kind (cause | regression), cause?, cause_zh?, status (resolved | passed | failed |
             outside), symptom_reproduced, resolved, reason?, merged_into?,
             fix?, fix_description?, symptom?, failures?, seconds,
             runs?: {<dialect>: {symptom_reproduced, resolved, failures, seconds,
                                 broken|fixed|*_uninterrupted: {passed, failures, steps, checks,
                                                                invariants, messages, host, terminal}}}}]}

>>> data = {"wall_seconds": 1.5, "options": {"jobs": 2, "response_timeout_seconds": 0.5}, "rows": [
...     {"id": "C35", "title": "Market competition", "status": "outside", "symptom_reproduced": False,
...      "resolved": False, "reason": "No wire effect.", "seconds": 0}]}
>>> print(format_table(data).splitlines()[-1])
1 causes: 0 resolved, 0 failed, 1 outside; wall time 1.5 s (2 jobs, response timeout 0.5 s)
"""

from __future__ import annotations

import json
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import DictLoader, Environment, select_autoescape
from markupsafe import Markup

from specs.masking import mask_text

SCHEMA = "pos-harness/matrix/1"
#: The runs of one dialect, in the order the report shows them.
RUN_ORDER = ("broken", "fixed", "broken_uninterrupted", "fixed_uninterrupted")
RUN_TITLES = {"broken": "flawed terminal (fix off)", "fixed": "fixed terminal",
              "broken_uninterrupted": "flawed terminal, uninterrupted (G7 reference)",
              "fixed_uninterrupted": "fixed terminal, uninterrupted (G7 reference)"}
#: Fields shown on a ladder rung besides MTI, STAN and response code.
LADDER_FIELDS = ("3", "4", "15", "22", "25", "37", "38", "48", "60", "63")
#: Longer field values are cut on the ladder (matrix.json has them whole).
LADDER_VALUE_CHARS = 64


# ============================================================================ the console table


def _yes(value: bool | None) -> str:
    return "yes" if value else "no"


def _width(text: str) -> int:
    """Columns a string takes on a terminal (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _clip(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` columns and padded to exactly ``width``."""
    text = " ".join(str(text).split())
    if _width(text) > width:
        while _width(text) > width - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (width - _width(text))


def _per_dialect(row: Mapping[str, Any], key: str) -> str:
    runs = row.get("runs") or {}
    values = {d: bool(r.get(key)) for d, r in runs.items()}
    if not values:
        return _yes(row.get(key))
    if all(values.values()):
        return "yes"
    if not any(values.values()):
        return "no"
    return "only " + ", ".join(d for d, v in values.items() if v)


def format_table(data: Mapping[str, Any]) -> str:
    """One line per scenario: id · cause · symptom reproduced · fix · resolved · time; then the totals."""
    rows = list(data.get("rows", ()))
    id_width = max([4, *(_width(str(r["id"])) for r in rows)])
    header = f"{'id':<{id_width}} {'cause':<50} {'symptom reproduced':<19} {'fix':<46} {'resolved':<9} {'time':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        status = row.get("status")
        if row.get("kind") == "regression":
            symptom, fix = "— (regression)", str(row.get("fix", ""))
            resolved = "passed" if status == "passed" else "no" if _per_dialect(row, "resolved") == "no" \
                else "only " + ", ".join(d for d, r in (row.get("runs") or {}).items() if r.get("resolved"))
        elif row.get("merged_into"):
            symptom, fix = "→ " + str(row["merged_into"]), f"merged into {row['merged_into']} (same mechanism)"
            resolved = "→ " + str(row["merged_into"])
        elif status == "outside":
            symptom, fix, resolved = "—", "outside: " + str(row.get("reason", "")), "outside"
        else:
            symptom, fix = _per_dialect(row, "symptom_reproduced"), str(row.get("fix", ""))
            resolved = _per_dialect(row, "resolved")
            if status == "failed" and resolved == "yes":
                resolved = "yes*"  # both runs passed in some sense but the row did not (see failures)
        seconds = row.get("seconds") or 0
        time_text = f"{seconds:.1f} s" if status != "outside" and not row.get("merged_into") else ""
        lines.append(f"{_clip(row['id'], id_width)} {_clip(row.get('title', ''), 50)} {_clip(symptom, 19)} "
                     f"{_clip(fix, 46)} {_clip(resolved, 9)} {time_text:>7}")
    counts = {s: sum(1 for r in rows if r.get("status") == s) for s in ("resolved", "passed", "failed", "outside")}
    options = data.get("options") or {}
    causes = sum(1 for r in rows if r.get("kind") != "regression")
    parts = [f"{counts['resolved']} resolved"] + ([f"{counts['passed']} passed"] if counts["passed"] else []) \
        + [f"{counts['failed']} failed", f"{counts['outside']} outside"]
    what = f"{causes} causes" if causes == len(rows) else f"{len(rows)} scenarios"
    lines.append("-" * len(header))
    lines.append(f"{what}: {', '.join(parts)}; wall time {data.get('wall_seconds', 0):.1f} s "
                 f"({options.get('jobs', '?')} jobs, response timeout {options.get('response_timeout_seconds', '?')} s)")
    return "\n".join(lines)


def format_failures(data: Mapping[str, Any], *, limit: int = 6) -> str:
    """What went wrong, per failed row (the first few reasons of each)."""
    out = []
    for row in data.get("rows", ()):
        if row.get("status") != "failed" or row.get("merged_into"):
            continue
        failures = row.get("failures") or ["no run completed"]
        out.append(f"{row['id']} {row.get('title', '')}:")
        out += [f"    {_clip(f, 220).rstrip()}" for f in failures[:limit]]
        if len(failures) > limit:
            out.append(f"    … {len(failures) - limit} more in matrix.json")
    return "\n".join(out)


# ============================================================================ matrix.json


def matrix_json(data: Mapping[str, Any]) -> str:
    """The whole matrix as JSON (``schema`` first)."""
    return json.dumps({"schema": SCHEMA, **data}, ensure_ascii=False, indent=1, default=str)


# ============================================================================ junit.xml


def junit_xml(data: Mapping[str, Any]) -> str:
    """JUnit XML: one test case per cause and dialect; outside causes and merged stubs are skipped
    with their reason; a failure carries every reason the row did not behave as its file expects."""
    suite = ET.Element("testsuite", name="pos-harness.matrix")
    tests = failures = skipped = 0
    total_time = 0.0
    for row in data.get("rows", ()):
        cause = row["id"]
        classname = f"matrix.{cause}"
        if row.get("status") == "outside" or row.get("merged_into"):
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"{cause} {row.get('title', '')}",
                                 time="0")
            reason = (f"outside the harness: {row.get('reason', '')}" if row.get("status") == "outside"
                      else f"merged into {row['merged_into']}: covered by {row['merged_into']}.yaml")
            ET.SubElement(case, "skipped", message=_clip(reason, 500).rstrip())
            tests += 1
            skipped += 1
            continue
        runs = row.get("runs") or {}
        if not runs:
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"{cause} {row.get('title', '')}",
                                 time="0")
            failure = ET.SubElement(case, "failure", message="no run completed")  # no dialect selected ran
            failure.text = "\n".join(row.get("failures", []))
            tests += 1
            failures += 1
            continue
        for dialect, result in runs.items():
            seconds = float(result.get("seconds") or 0)
            total_time += seconds
            case = ET.SubElement(suite, "testcase", classname=classname,
                                 name=f"{cause}[{dialect}] {row.get('title', '')}", time=f"{seconds:.3f}")
            tests += 1
            problems = []
            regression = row.get("kind") == "regression"
            if not regression and not result.get("symptom_reproduced"):
                problems.append("symptom not reproduced with the fix off")
            if not result.get("resolved"):
                problems.append("expectations not met" if regression else "not resolved with the fix on")
            if problems:
                failures += 1
                failure = ET.SubElement(case, "failure", message=_clip("; ".join(problems) + ": " + "; ".join(
                    result.get("failures", [])[:2]), 1000).rstrip())
                failure.text = "\n".join(result.get("failures", []))
            out = ET.SubElement(case, "system-out")
            out.text = (f"symptom: {row.get('symptom', '')}\nfix: {row.get('fix_description', '')}\n"
                        f"reproduced: {result.get('symptom_reproduced')} resolved: {result.get('resolved')}")
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{total_time:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# ============================================================================ index.html


def _cut(value: str) -> str:
    return value if len(value) <= LADDER_VALUE_CHARS else value[:LADDER_VALUE_CHARS - 1] + "…"


def _rung(message: Mapping[str, Any]) -> dict[str, Any]:
    """One message of the ladder: the fields worth seeing at a glance."""
    fields = message.get("message") or {}
    shown = [(k, _cut(str(fields[k]))) for k in LADDER_FIELDS if k in fields]
    if message.get("kind") == "sent" and "39" in fields:  # a CUP reversal's reason (98, 96, A0, 06)
        shown.insert(0, ("39", fields["39"]))
    return {"mti": message.get("mti"), "stan": message.get("stan"), "rc": message.get("rc"), "fields": shown}


def _ladder(messages: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        kind = m.get("kind")
        item = {"kind": kind, "at_ms": m.get("at_ms"), "step": m.get("step"), "text": m.get("text", ""),
                "faults": m.get("faults", []), "business_at": m.get("business_at"), "matched": m.get("matched"),
                "mac_verified": m.get("mac_verified"), "mac": m.get("mac")}
        if kind in ("sent", "received"):
            item.update(_rung(m))
        elif kind == "status":
            item["text"] = (f"R {', '.join(m.get('pending_reversals') or []) or '—'} · "
                            f"Q {', '.join(m.get('saf_queue') or []) or '—'} · settlement "
                            f"{m.get('settlement_state')}")
        out.append(item)
    return out


#: The page style both reports share.
_STYLE = r""":root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1300px;
       padding: 1rem 1.5rem 4rem; color: #1f2328; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; } .muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid var(--line); padding: .3rem .5rem;
       text-align: left; vertical-align: top; }
th { background: var(--bg); position: sticky; top: 0; }
.matrix td:nth-child(1) { white-space: nowrap; font-weight: 600; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: .85em; font-weight: 600; }
.resolved, .passed, .yes, .pass { color: #fff; background: var(--ok); } .failed, .no, .fail { color: #fff; background: var(--bad); }
.outside, .na { color: #fff; background: #8c959f; } .partial, .error { color: #fff; background: #bf8700; }
.zh { color: var(--muted); font-size: .9em; }
details.scenario { border: 1px solid var(--line); border-radius: 6px; margin: .8rem 0; padding: .4rem .8rem; }
details.scenario > summary { cursor: pointer; font-weight: 600; }
details.run { margin: .6rem 0 .6rem 1rem; } details.run > summary { cursor: pointer; }
.checks li.fail { background: none; color: var(--bad); } .checks li.pass { background: none; color: var(--ok); }
.ladder { font: 12px/1.35 ui-monospace, SFMono-Regular, Menlo, monospace; }
.ladder td { border-bottom: 1px dotted var(--line); padding: .15rem .4rem; }
.ladder .t { text-align: right; color: var(--muted); white-space: nowrap; }
.ladder .term { text-align: right; width: 36%; } .ladder .host { width: 36%; } .ladder .arrow { text-align: center; width: 4%; }
.ladder tr.note td, .ladder tr.status td, .ladder tr.event td { color: var(--muted); font-style: italic; }
.ladder tr.event td.ev { color: #9a6700; }
.mti { font-weight: 700; } .rc00 { color: var(--ok); font-weight: 700; } .rcx { color: var(--bad); font-weight: 700; }
.fault { color: #fff; background: #8250df; border-radius: 3px; padding: 0 .3em; margin-left: .3em; }
.flag { color: var(--bad); } code { background: var(--bg); padding: 0 .2em; }
.findings { margin: 0; padding-left: 1.2rem; color: var(--bad); }
"""

#: The message ladder (terminal ↔ host) of one run or check: ``ladder_table(messages)`` where
#: ``messages`` are trace items as the matrix runner records them (``kind`` sent / received /
#: timeout / link_lost / unreadable / connect_failed / crash / restart / child / status / note,
#: ``at_ms``, ``step``, ``text``, ``message`` (masked), ``matched``, ``mac_verified``, ``mac``, ``faults``).
_LADDER = r"""{% macro ladder_table(messages) %}
<table class="ladder"><thead><tr><th class="t">ms</th><th>step</th><th class="term">terminal</th><th class="arrow"></th><th class="host">host</th><th>notes</th></tr></thead><tbody>
{% for m in ladder(messages) %}
{% if m.kind == "sent" %}
<tr><td class="t">{{ "%.0f"|format(m.at_ms or 0) }}</td><td>{{ m.step or "" }}</td>
<td class="term"><span class="mti">{{ m.mti }}</span> STAN {{ m.stan }}{% for k, v in m.fields %} · {{ k }}={{ v }}{% endfor %}{% if m.mac %} · MAC{% endif %}</td>
<td class="arrow">→</td><td class="host">{% for f in m.faults %}<span class="fault">{{ f }}</span>{% endfor %}</td><td class="muted">{{ m.text }}</td></tr>
{% elif m.kind == "received" %}
<tr><td class="t">{{ "%.0f"|format(m.at_ms or 0) }}</td><td>{{ m.step or "" }}</td><td class="term">{% if m.matched == false %}<span class="flag">not matched (stray)</span>{% endif %}{% if m.mac_verified == false %} <span class="flag">MAC failed</span>{% endif %}</td>
<td class="arrow">←</td><td class="host"><span class="mti">{{ m.mti }}</span> STAN {{ m.stan }}{% if m.rc %} · <span class="{{ 'rc00' if m.rc == '00' else 'rcx' }}">rc {{ m.rc }}</span>{% endif %}{% for k, v in m.fields %} · {{ k }}={{ v }}{% endfor %}</td>
<td class="muted">{% if m.mac_verified %}MAC ok{% endif %}</td></tr>
{% elif m.kind in ("timeout", "link_lost", "unreadable", "connect_failed", "crash", "restart", "child") %}
<tr class="event"><td class="t">{{ "%.0f"|format(m.at_ms or 0) }}</td><td>{{ m.step or "" }}</td><td class="ev" colspan="4">{{ m.kind|replace("_", " ") }}: {{ m.text }}</td></tr>
{% else %}
<tr class="{{ m.kind }}"><td class="t">{{ "%.0f"|format(m.at_ms or 0) }}</td><td>{{ m.step or "" }}</td><td colspan="4">{{ m.text }}</td></tr>
{% endif %}
{% endfor %}
</tbody></table>
{% endmacro %}
"""

_TEMPLATE = r"""{% from "ladder.html" import ladder_table %}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pos-harness — cause-and-fix matrix</title>
<style>
{% include "style.css" %}
</style>
</head>
<body>
<h1>Cause-and-fix matrix</h1>
<p class="muted">Generated {{ data.generated_at }} · wall time {{ "%.1f"|format(data.wall_seconds or 0) }} s ·
{{ data.options.jobs }} jobs · response timeout {{ data.options.response_timeout_seconds }} s ·
{{ summary.resolved }} resolved,{% if summary.passed %} {{ summary.passed }} passed,{% endif %} {{ summary.failed }} failed, {{ summary.outside }} outside.
Each cause is run with the fix off (the symptom must appear) and with the fix on (its invariants must hold);
a regression file is run once and must meet its expectations.</p>
<p class="muted legend"><b>Reading a ladder:</b> → a request the terminal wrote, ← what the host answered (rc 00 green,
other codes red), purple tags the host's faults that fired on that message. A grey <i>state</i> row shows the
terminal's durable state after a step: <b>R</b> the pending reversal (STAN of the request it would undo), <b>Q</b> the
store-and-forward queue of advices not yet accepted (STANs), and the settlement stage; — means empty.
Link to a scenario with <code>index.html#ID</code> (e.g. <code>#C01</code>): it opens expanded.</p>

<table class="matrix">
<thead><tr><th>id</th><th>cause</th><th>symptom reproduced</th><th>fix</th><th>resolved</th><th>status</th><th>time</th></tr></thead>
<tbody>
{% for row in rows %}
<tr>
 <td><a href="#{{ row.id }}">{{ row.id }}</a></td>
 <td>{{ row.title }}<br><span class="zh">{{ row.cause_zh }}</span></td>
 {% if row.merged_into %}
 <td colspan="3">merged into <a href="#{{ row.merged_into }}">{{ row.merged_into }}</a> (same mechanism)</td>
 {% elif row.status == "outside" %}
 <td colspan="3">{{ row.reason }}</td>
 {% elif row.kind == "regression" %}
 <td>— <span class="muted">(regression)</span></td>
 <td>{{ row.fix }}</td>
 <td>{% for d, r in (row.runs or {}).items() %}<span class="badge {{ 'yes' if r.resolved else 'no' }}">{{ d }}</span> {% endfor %}</td>
 {% else %}
 <td>{% for d, r in (row.runs or {}).items() %}<span class="badge {{ 'yes' if r.symptom_reproduced else 'no' }}">{{ d }}</span> {% endfor %}</td>
 <td>{{ row.fix }}</td>
 <td>{% for d, r in (row.runs or {}).items() %}<span class="badge {{ 'yes' if r.resolved else 'no' }}">{{ d }}</span> {% endfor %}</td>
 {% endif %}
 <td><span class="badge {{ row.status }}">{{ row.status }}</span></td>
 <td>{{ "%.1f s"|format(row.seconds or 0) if row.status != "outside" and not row.merged_into else "" }}</td>
</tr>
{% endfor %}
</tbody>
</table>

{% for row in rows %}
<details class="scenario" id="{{ row.id }}" {% if row.status == "failed" %}open{% endif %}>
<summary>{{ row.id }} — {{ row.title }} <span class="badge {{ row.status }}">{{ row.status }}</span></summary>
{% if row.cause %}<p><b>Reported as:</b> {{ row.cause_zh }} — {{ row.cause }} <span class="muted">(reports {{ (row.reports or [])|join(", ") }}; scope {{ (row.scope or [])|join("/") }})</span></p>{% endif %}
{% if row.status == "outside" %}
<p><b>Outside the harness:</b> {{ row.reason }}</p>
{% elif row.merged_into %}
<p>Covered by <a href="#{{ row.merged_into }}">{{ row.merged_into }}</a>: the same mechanism.</p>
{% else %}
{% if row.kind == "regression" %}
<p><b>Regression:</b> one run that must meet the file's expectations.</p>
{% else %}
<p><b>Symptom (fix off):</b> {{ row.symptom }}</p>
<p><b>Fix:</b> {{ row.fix_description }} <span class="muted">({{ row.fix }})</span></p>
{% endif %}
{% if row.failures %}<p><b>Not as expected:</b></p><ul class="findings">{% for f in row.failures %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
{% for dialect, result in (row.runs or {}).items() %}
<h3>{{ dialect }}{% if row.kind != "regression" %} · symptom reproduced <span class="badge {{ 'yes' if result.symptom_reproduced else 'no' }}">{{ 'yes' if result.symptom_reproduced else 'no' }}</span>{% endif %}
 · {{ 'passed' if row.kind == "regression" else 'resolved' }} <span class="badge {{ 'yes' if result.resolved else 'no' }}">{{ 'yes' if result.resolved else 'no' }}</span>
 <span class="muted">{{ "%.1f"|format(result.seconds or 0) }} s</span></h3>
{% for name in run_order if result[name] %}{% set run = result[name] %}
<details class="run" {% if not run.passed and name in ("broken", "fixed") %}open{% endif %}>
<summary>{{ "the run" if row.kind == "regression" and name == "fixed" else run_titles[name] }} — <span class="badge {{ 'pass' if run.passed else 'fail' }}">{{ 'as expected' if run.passed else 'not as expected' }}</span>
 <span class="muted">{{ "%.2f"|format(run.seconds or 0) }} s, {{ run.messages|selectattr("kind", "in", ["sent", "received"])|list|length }} messages</span></summary>
{% if run.checks %}<ul class="checks">{% for c in run.checks %}<li class="{{ 'pass' if c.passed else 'fail' }}">{{ '✔' if c.passed else '✘' }} {{ c.what }}{% if c.detail %} — <span class="muted">{{ c.detail }}</span>{% endif %}</li>{% endfor %}</ul>{% endif %}
{% if run.unfired_faults %}<p class="muted">Faults that never fired in this run (they tested nothing here): {{ run.unfired_faults|join(", ") }}</p>{% endif %}
{% if run.failures and not run.checks %}<ul class="findings">{% for f in run.failures %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
<table><thead><tr><th>step</th><th>outcome</th><th>rc</th><th>STAN</th><th>what the terminal said</th></tr></thead><tbody>
{% for st in run.steps if st.kind in ("terminal", "crash_at", "restart", "expect") %}<tr><td>{{ st.name }}</td><td>{{ st.outcome or "" }}</td><td>{{ st.rc or "" }}</td><td>{{ st.stan or "" }}</td><td class="muted">{{ st.text }}</td></tr>{% endfor %}
</tbody></table>
<table><thead><tr><th>invariant</th><th></th><th>findings</th></tr></thead><tbody>
{% for inv in run.invariants %}{% set as_expected = (inv.expected == "break") != inv.holds %}<tr><td>{{ inv.id }} {{ inv.title }}{% if inv.expected %} <span class="muted">(expected to {{ inv.expected }})</span>{% elif inv.unclaimed %} <span class="muted">(not claimed: {{ inv.unclaimed }})</span>{% endif %}</td>
<td><span class="badge {{ 'na' if not inv.applicable or (not inv.expected and inv.unclaimed) else 'pass' if as_expected else 'fail' }}">{{ 'n/a' if not inv.applicable else ('holds' if inv.holds else 'broken') ~ (', as expected' if inv.expected == "break" and not inv.holds else '') }}</span></td>
<td>{% if inv.findings %}<ul class="{{ 'muted' if inv.expected == 'break' or inv.unclaimed else 'findings' }}">{% for f in inv.findings %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}</td></tr>{% endfor %}
</tbody></table>
{{ ladder_table(run.messages) }}
</details>
{% endfor %}
{% endfor %}
{% endif %}
{% if row.runbook %}<p><b>Runbook:</b> {{ row.runbook }}</p>{% endif %}
</details>
{% endfor %}
<script>
// index.html#C01 opens that scenario (and keeps working when the hash changes).
function openHash() {
  var el = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
  if (el && el.tagName === "DETAILS") { el.open = true; el.scrollIntoView(); }
}
window.addEventListener("hashchange", openHash);
openHash();
</script>
</body>
</html>
"""


def _finalize(value: Any) -> Any:
    """Every printed string goes through PAN masking once more (defence in depth)."""
    if isinstance(value, Markup):
        return value  # a macro's output (the ladder): every string in it went through here already
    if isinstance(value, str):
        return mask_text(value)
    return value


_ENV = Environment(loader=DictLoader({"style.css": _STYLE, "ladder.html": _LADDER}),
                   autoescape=select_autoescape(default=True, default_for_string=True), finalize=_finalize,
                   trim_blocks=True, lstrip_blocks=True)
_ENV.globals["ladder"] = _ladder


def html_report(data: Mapping[str, Any]) -> str:
    """A self-contained page: the table, and per scenario its checks, invariants and the message
    ladder terminal ↔ host (MTI, key fields, response codes, timings, faults fired) of every run."""
    rows = list(data.get("rows", ()))
    summary = {s: sum(1 for r in rows if r.get("status") == s) for s in ("resolved", "passed", "failed", "outside")}
    template = _ENV.from_string(_TEMPLATE)
    return template.render(data={"options": {}, **data}, rows=rows, summary=summary, run_order=RUN_ORDER,
                           run_titles=RUN_TITLES)


_PROBE_TEMPLATE = r"""{% from "ladder.html" import ladder_table %}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pos-harness — host probe</title>
<style>
{% include "style.css" %}
</style>
</head>
<body>
<h1>Host probe</h1>
<p class="muted">{{ data.options.host }}:{{ data.options.port }} · dialect {{ data.options.dialect }} ·
TID {{ data.options.tid }} · response timeout {{ data.options.timeout }} s ·
{{ data.summary.pass }} passed, {{ data.summary.fail }} failed, {{ data.summary.error }} could not run.
Every check sends real messages from the terminal side only; what it created is reversed or settled.</p>
{% if data.left_behind %}<p><b>Left on the host:</b></p><ul class="findings">{% for item in data.left_behind %}<li>{{ item }}</li>{% endfor %}</ul>
{% else %}<p>Nothing was left on the host: every approval was reversed or settled.</p>{% endif %}
<table class="matrix">
<thead><tr><th>check</th><th>what it asks</th><th>verdict</th><th>what the host did</th><th>cleanup</th></tr></thead>
<tbody>
{% for c in data.checks %}
<tr><td><a href="#{{ c.name }}">{{ c.name }}</a></td><td>{{ c.title }}</td>
<td><span class="badge {{ c.status }}">{{ c.status }}</span></td><td>{{ c.summary }}</td>
<td>{% if c.left_behind %}<span class="flag">left behind: {{ c.left_behind|join("; ") }}</span>{% else %}{{ c.cleanup|join("; ") or "nothing to undo" }}{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
{% for c in data.checks %}
<details class="scenario" id="{{ c.name }}" {% if c.status != "pass" %}open{% endif %}>
<summary>{{ c.name }} — {{ c.title }} <span class="badge {{ c.status }}">{{ c.status }}</span></summary>
<p><b>Host:</b> {{ c.summary }} <span class="muted">(expected: {{ c.expectation }})</span></p>
{% if c.findings %}<ul class="findings">{% for f in c.findings %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
{% if c.settlement %}<p><b>Settlement:</b> batch {{ c.settlement.batch }} {{ c.settlement.first }}{% if c.settlement.host_totals %} (host {{ c.settlement.host_totals }}){% endif %}, {{ c.settlement.uploaded }} uploaded, {{ "closed" if c.settlement.closed else "not closed" }}</p>{% endif %}
{% if c.name == "latency" %}<table><thead><tr><th>MTI</th><th>n</th><th>p50</th><th>p99</th><th>max</th><th>time-outs</th></tr></thead><tbody>
{% for row in c.facts.per_mti %}<tr><td>{{ row.mti }}</td><td>{{ row.count }}</td><td>{{ ms(row.p50) }}</td><td>{{ ms(row.p99) }}</td><td>{{ ms(row.max) }}</td><td>{{ row.timeouts }}</td></tr>{% endfor %}
</tbody></table>{% else %}
{{ ladder_table(probe_ladder(c)) }}
{% endif %}
</details>
{% endfor %}
</body>
</html>
"""


def probe_html(data: Mapping[str, Any]) -> str:
    """The probe's page: the table, and per check its findings, settlement and message ladder."""
    from emulator.probe import ladder_messages

    def ms(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds * 1000:.1f} ms"

    return _ENV.from_string(_PROBE_TEMPLATE).render(data=data, probe_ladder=ladder_messages, ms=ms)


def write_probe_reports(data: Mapping[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``probe.json``, ``junit.xml`` and ``index.html`` into ``directory`` (created if needed)."""
    from emulator.probe import junit_xml as probe_junit

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "probe.json", "junit": out / "junit.xml", "html": out / "index.html"}
    paths["json"].write_text(json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    paths["junit"].write_text(probe_junit(data), encoding="utf-8")
    paths["html"].write_text(probe_html(data), encoding="utf-8")
    return paths


def write_reports(data: Mapping[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``matrix.json``, ``junit.xml`` and ``index.html`` into ``directory`` (created if needed).

    Returns:
        File kind -> path written.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "matrix.json", "junit": out / "junit.xml", "html": out / "index.html"}
    paths["json"].write_text(matrix_json(data), encoding="utf-8")
    paths["junit"].write_text(junit_xml(data), encoding="utf-8")
    paths["html"].write_text(html_report(data), encoding="utf-8")
    return paths
