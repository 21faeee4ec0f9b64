"""Reports of a load run: the console summary, ``load.json`` and ``load.html`` (a latency plot over time).

Every writer takes the plain data of :meth:`emulator.load.LoadResult.as_dict`, so the page can be
rebuilt from a saved ``load.json``.  The page is self-contained: its plot is inline SVG drawn here,
no script, no stylesheet or font from elsewhere, so it opens offline.  Nothing in a load report
carries card data (findings name TIDs, STANs, RRNs and amounts); every printed string still goes
through PAN masking once more.

>>> print(_svg_path([(0, 0.0), (1, 5.0)], x_max=1, y_max=10, width=100, height=50))
M40.0,80.0 L140.0,55.0
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from specs.masking import mask_text

_FINDINGS_SHOWN = 10


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 1000 else f"{value / 1000:.2f}s"


def _codes(counts: Mapping[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in counts.items()) or "-"


def format_summary(data: Mapping[str, Any]) -> str:
    """The console summary: one line per operation type, the wire, settlement, the invariants."""
    o = data["options"]
    shape = "closed loop" if o["closed_loop"] else f"open loop {o['rate']:g}/s"
    bound = f"{o['duration_seconds']:g} s" if o["duration_seconds"] is not None else f"{o['count']} operations"
    faults = ", ".join(f"{k} {v:g}%" for k, v in o["faults"].items()) or "none"
    lines = [f"load: {o['terminals']} terminals ({o['dialect']}), {shape} for {bound}, journals in "
             f"{o['journals']}, faults {faults}",
             f"{'type':<14}{'mti':<6}{'count':>7}  {'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}{'/s':>8}  "
             "outcomes; rc"]
    for t in data["types"]:
        lat = t["latency_ms"]
        rate = "-" if t["per_second"] is None else f"{t['per_second']:.1f}"
        lines.append(f"{t['type']:<14}{t['mti'] or '----':<6}{t['count']:>7}  {_ms(lat['p50']):>8}{_ms(lat['p90']):>8}"
                     f"{_ms(lat['p99']):>8}{_ms(lat['max']):>8}{rate:>8}  {_codes(t['outcomes'])}; rc {_codes(t['rc'])}")
    wire = "; ".join(f"{mti} {_codes(c)}" for mti, c in data["wire"].items())
    lines.append(f"wire: {wire}")
    s = data["settlement"]
    lines.append(f"settlement: {s['settled']}/{s['terminals']} terminals closed their batch with the host's agreement")
    for line in s["not_settled"][:_FINDINGS_SHOWN]:
        lines.append(f"  not settled: {line}")
    for g, verdict in data["invariants"].items():
        found = verdict["findings"]
        lines.append(f"{g} {verdict['title']}: " + ("holds" if not found else f"BROKEN ({len(found)} findings)"))
        lines.extend(f"  {f}" for f in found[:_FINDINGS_SHOWN])
        if len(found) > _FINDINGS_SHOWN:
            lines.append(f"  ... and {len(found) - _FINDINGS_SHOWN} more (see the JSON report)")
    lines.append(f"G7 Restart idempotency: {data['invariant_g7']}")
    for error in data["errors"][:_FINDINGS_SHOWN]:
        lines.append(f"error: {error}")
    rate = data["throughput_per_second"]
    lines.append(f"{data['operations'] - data['unanswered']}/{data['operations']} operations answered "
                 f"({data['unanswered']} not), {data['scheduled']} scheduled; load phase {data['load_seconds']:.1f} s "
                 f"at {rate if rate is not None else '-'}/s; wall {data['wall_seconds']:.1f} s; "
                 + ("books equal" if data["books_equal"] else "BOOKS NOT EQUAL")
                 + ("" if data["ok"] else "; run FAILED"))
    return "\n".join(mask_text(line) for line in lines)


# ============================================================================ the page

_PLOT_LEFT, _PLOT_TOP = 40.0, 30.0


def _svg_path(points: Sequence[tuple[float, float]], *, x_max: float, y_max: float, width: float,
              height: float) -> str:
    """SVG path data through ``points`` scaled into a plot of ``width`` x ``height`` (y grows upwards)."""
    def xy(x: float, y: float) -> str:
        return (f"{_PLOT_LEFT + (x / x_max if x_max else 0) * width:.1f},"
                f"{_PLOT_TOP + height - (min(y, y_max) / y_max if y_max else 0) * height:.1f}")
    return " ".join(("M" if i == 0 else "L") + xy(x, y) for i, (x, y) in enumerate(points))


def latency_plot(timeline: Sequence[Mapping[str, Any]], *, width: float = 760, height: float = 240) -> str:
    """Inline SVG: p50, p99 and max latency (ms) per second of the run, failures as red ticks."""
    if not timeline:
        return "<p>No operation finished during the load phase.</p>"
    x_max = max(1.0, float(max(r["second"] for r in timeline)))
    y_max = max(1.0, max(float(r["max_ms"]) for r in timeline)) * 1.05
    series = [("max_ms", "#bbbbbb", "max"), ("p99_ms", "#d9822b", "p99"), ("p50_ms", "#2b6cd9", "p50")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 80:.0f}" height="{height + 70:.0f}" '
             'role="img" aria-label="latency over time" font-family="sans-serif" font-size="11">',
             f'<rect x="{_PLOT_LEFT}" y="{_PLOT_TOP}" width="{width}" height="{height}" fill="none" stroke="#888"/>']
    for i in range(5):
        y_value = y_max * i / 4
        y = _PLOT_TOP + height - height * i / 4
        parts.append(f'<text x="{_PLOT_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{y_value:.0f}</text>')
        parts.append(f'<line x1="{_PLOT_LEFT}" x2="{_PLOT_LEFT + width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
    for i in range(6):
        x = _PLOT_LEFT + width * i / 5
        parts.append(f'<text x="{x:.1f}" y="{_PLOT_TOP + height + 14}" text-anchor="middle">'
                     f'{x_max * i / 5:.0f}</text>')
    parts.append(f'<text x="{_PLOT_LEFT + width / 2}" y="{_PLOT_TOP + height + 30}" text-anchor="middle">'
                 'second of the load phase</text>')
    parts.append(f'<text x="{_PLOT_LEFT}" y="{_PLOT_TOP - 10}">latency, ms</text>')
    for key, colour, label in series:
        points = [(float(r["second"]), float(r[key])) for r in timeline]
        parts.append(f'<path d="{_svg_path(points, x_max=x_max, y_max=y_max, width=width, height=height)}" '
                     f'fill="none" stroke="{colour}" stroke-width="1.5"><title>{label}</title></path>')
    for r in timeline:
        if r["failed"]:
            x = _PLOT_LEFT + float(r["second"]) / x_max * width
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_PLOT_TOP + height}" y2="{_PLOT_TOP + height - 8}" '
                         f'stroke="#c00"><title>{r["failed"]} without an answer</title></line>')
    for i, (_, colour, label) in enumerate(reversed(series)):
        x = _PLOT_LEFT + width - 170 + i * 60
        parts.append(f'<line x1="{x}" x2="{x + 16}" y1="{_PLOT_TOP - 14}" y2="{_PLOT_TOP - 14}" stroke="{colour}" '
                     f'stroke-width="2"/><text x="{x + 20}" y="{_PLOT_TOP - 10}">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pos-harness load run</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td.l, th.l { text-align: left; } .bad { color: #b00; font-weight: bold; } .good { color: #070; }
</style></head><body>
<h1>Load run: {% if data.ok %}<span class="good">passed</span>{% else %}<span class="bad">failed</span>{% endif %}</h1>
<p>{{ summary_line }}</p>
<h2>Operations</h2>
<table><tr><th class="l">type</th><th>MTI</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th>
<th>max ms</th><th>per second</th><th class="l">outcomes</th><th class="l">response codes</th></tr>
{% for t in data.types %}
<tr><td class="l">{{ t.type }}</td><td>{{ t.mti or '----' }}</td><td>{{ t.count }}</td>
<td>{{ t.latency_ms.p50 }}</td><td>{{ t.latency_ms.p90 }}</td><td>{{ t.latency_ms.p99 }}</td><td>{{ t.latency_ms.max }}</td>
<td>{{ t.per_second }}</td><td class="l">{{ codes(t.outcomes) }}</td><td class="l">{{ codes(t.rc) }}</td></tr>
{% endfor %}
</table>
<h2>Latency over time</h2>
{{ plot }}
<h2>Requests on the wire</h2>
<table><tr><th class="l">request MTI</th><th class="l">sent, answers by response code</th></tr>
{% for mti, counts in data.wire.items() %}<tr><td class="l">{{ mti }}</td><td class="l">{{ codes(counts) }}</td></tr>
{% endfor %}</table>
<h2>Settlement and invariants</h2>
<p>{{ data.settlement.settled }} of {{ data.settlement.terminals }} terminals closed their batch with the host's agreement.</p>
{% if data.settlement.not_settled %}<ul>{% for s in data.settlement.not_settled %}<li>{{ s }}</li>{% endfor %}</ul>{% endif %}
<table><tr><th class="l">invariant</th><th class="l">verdict</th><th class="l">findings (terminal, STAN)</th></tr>
{% for g, v in data.invariants.items() %}
<tr><td class="l">{{ g }} {{ v.title }}</td><td class="l {{ 'good' if v.holds else 'bad' }}">{{ 'holds' if v.holds else 'broken' }}</td>
<td class="l">{% for f in v.findings %}{{ f }}<br>{% endfor %}</td></tr>
{% endfor %}
<tr><td class="l">G7 Restart idempotency</td><td class="l" colspan="2">{{ data.invariant_g7 }}</td></tr>
</table>
{% if data.errors %}<h2>Errors</h2><ul>{% for e in data.errors %}<li>{{ e }}</li>{% endfor %}</ul>{% endif %}
<h2>Options</h2>
<table>{% for k, v in data.options.items() %}<tr><td class="l">{{ k }}</td><td class="l">{{ v }}</td></tr>{% endfor %}</table>
</body></html>
"""


def _finalize(value: Any) -> Any:
    return mask_text(value) if isinstance(value, str) and not isinstance(value, Markup) else value


_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True), finalize=_finalize,
                   trim_blocks=True, lstrip_blocks=True)


def html_report(data: Mapping[str, Any]) -> str:
    """The self-contained page of one load run."""
    summary = format_summary(data).splitlines()[-1]
    return _ENV.from_string(_TEMPLATE).render(data=data, summary_line=summary, codes=_codes,
                                              plot=Markup(latency_plot(data.get("timeline") or [])))


def write_reports(data: Mapping[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``load.json`` and ``load.html`` into ``directory`` (created if needed)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "load.json", "html": out / "load.html"}
    paths["json"].write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    paths["html"].write_text(html_report(data), encoding="utf-8")
    return paths
