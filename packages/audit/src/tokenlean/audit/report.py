"""The report: one self-contained HTML file (inline CSS and SVG, the JSON embedded).

``render_html(report)`` takes the dict that ``tokenlean audit --json`` prints
(and that the demo builds) and returns a page that needs no network to view:
no external stylesheet, script, font or image. Its charts are SVG drawn here:

* savings waterfall: $ per 1M tokens before, what each layer removed, after;
* cost per 1M tokens before / after;
* cache: similarity of the candidates the vector search proposed, split into
  hits the false-hit guard accepted and candidates it rejected;
* compression: ratio vs retention estimate, one point per compressed message;
* budget: predicted ``max_tokens`` vs actual answer length (coverage = share
  of answers the cap would not have cut).

The full report is embedded as ``<script type="application/json"
id="tokenlean-report">``; ``read_embedded(html)`` gets it back.

Keys the page reads (all optional except the headline numbers)::

    title, kind ("audit" | "demo"), generated_at, price_as, source{...},
    requests, cost_usd_before, cost_usd_after, cost_per_mtok_before,
    cost_per_mtok_after, saved_ratio, tokens_before{input,output},
    tokens_after{input,output},
    layers: [{layer, status, note, saved_input_tokens, saved_output_tokens,
              saved_usd, saved_per_mtok, requests_changed, quality{...}}],
    cache{lookups, hits, accepted[...similarity], rejected[...similarity], examples[...]},
    compression{points: [[ratio, retention], ...]},
    budget{coverage, quantile, points: [[predicted, actual], ...]},
    answers: [{question, raw, lean, cached, similarity}],
    notes: [str]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from . import _svg

__all__ = ["EMBED_ID", "read_embedded", "render_html", "write_html"]

EMBED_ID = "tokenlean-report"

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #1a202c; background: #f7fafc; }
main { max-width: 1160px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; }
.sub { color: #4a5568; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 12px 16px;
        min-width: 170px; }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { color: #4a5568; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #e2e8f0; border-radius: 8px;
         padding: 8px; flex: 1 1 460px; max-width: calc(50% - 8px); min-width: 320px; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #4a5568; padding: 4px 8px 0; }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 8px 0; }
th, td { border: 1px solid #e2e8f0; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #edf2f7; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.skipped { color: #718096; }
.note { color: #4a5568; font-size: 13px; }
pre { background: #1a202c; color: #e2e8f0; padding: 12px; border-radius: 8px; overflow: auto;
      max-height: 480px; font-size: 12px; }
.ans { white-space: pre-wrap; max-width: 420px; }
"""

# The only script: parse the embedded JSON and mark the page, so a browser test
# can tell that the data block is valid JSON as a browser reads it.
_JS = ("(function(){var e=document.getElementById('" + EMBED_ID + "');"
       "var d=JSON.parse(e.textContent);"
       "document.body.setAttribute('data-report-layers',String((d.layers||[]).length));"
       "document.body.setAttribute('data-report-ok','1');})();")


def _num(value: Any, default: float = 0.0) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _embed(report: Mapping[str, Any]) -> str:
    text = json.dumps(_clean(report), ensure_ascii=False, sort_keys=False)
    # no "<" at all inside the data block: nothing in it can end or confuse the element
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def read_embedded(html: str) -> dict[str, Any]:
    """The report dict embedded in a page written by :func:`render_html`."""
    match = re.search(rf'<script type="application/json" id="{EMBED_ID}">(.*?)</script>',
                      html, flags=re.S)
    if match is None:
        raise ValueError("no embedded tokenlean report in this HTML")
    return json.loads(match.group(1))


def _money(value: Any, digits: int = 4) -> str:
    return "unknown" if value is None else f"${_num(value):,.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{_num(value) * 100:.1f}%"


def _opt3(value: Any) -> str:
    return "–" if value is None else f"{_num(value):.3f}"


def _quality(quality: Mapping[str, Any] | None) -> str:
    if not quality:
        return "–"
    out = []
    for key, value in quality.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(f"{escape(str(key))}={_num(value):.3g}")
        else:
            out.append(f"{escape(str(key))}={escape(str(value))}")
    return ", ".join(out)


def _cards(report: Mapping[str, Any]) -> str:
    items = [
        ("$ / 1M tokens before", _money(report.get("cost_per_mtok_before"), 2)),
        ("$ / 1M tokens after", _money(report.get("cost_per_mtok_after"), 2)),
        ("saved", _pct(report.get("saved_ratio"))),
        ("requests", f"{int(_num(report.get('requests'))):,}"),
        ("spend before", _money(report.get("cost_usd_before"))),
        ("spend after", _money(report.get("cost_usd_after"))),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>'
        for k, v in items) + "</div>"


def _layer_table(layers: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for layer in layers:
        status = str(layer.get("status", "ran"))
        cls = "" if status == "ran" else ' class="skipped"'
        rows.append(
            f"<tr{cls}><td>{escape(str(layer.get('layer', '?')))}</td><td>{escape(status)}</td>"
            f'<td class="n">{int(_num(layer.get("saved_input_tokens"))):,}</td>'
            f'<td class="n">{int(_num(layer.get("saved_output_tokens"))):,}</td>'
            f'<td class="n">{_money(layer.get("saved_usd"))}</td>'
            f'<td class="n">{_money(layer.get("saved_per_mtok"), 3)}</td>'
            f'<td class="n">{int(_num(layer.get("requests_changed"))):,}</td>'
            f"<td>{_quality(layer.get('quality'))}</td>"
            f'<td class="note">{escape(str(layer.get("note") or ""))}</td></tr>')
    head = ("<tr><th>layer</th><th>status</th><th>input tok saved</th><th>output tok saved</th>"
            "<th>$ saved</th><th>$ / 1M tok saved</th><th>requests changed</th>"
            "<th>quality proxy</th><th>note</th></tr>")
    return f'<table class="layers">{head}{"".join(rows)}</table>'


def _output_estimate(estimate: Any) -> str:
    """The output row (concise mode): an estimate from measured ratios, with its source."""
    if not isinstance(estimate, Mapping):
        return ""
    rows = []
    for task, row in (estimate.get("by_task_type") or {}).items():
        ratio = row.get("measured_ratio")
        rows.append(
            f"<tr><td>{escape(str(task))}</td>"
            f'<td class="n">{int(_num(row.get("calls"))):,}</td>'
            f'<td class="n">{int(_num(row.get("output_tokens"))):,}</td>'
            f'<td class="n">{"-" if ratio is None else f"{_num(ratio):.3f}"}</td>'
            f'<td class="n">{int(_num(row.get("est_saved_output_tokens"))):,}</td>'
            f'<td class="n">{_money(row.get("est_saved_usd"))}</td>'
            f'<td class="note">{escape(str(row.get("why") or ""))}</td></tr>')
    head = ("<tr><th>task type</th><th>calls</th><th>output tokens</th><th>measured ratio</th>"
            "<th>est. output tok saved</th><th>est. $ saved</th><th>why</th></tr>")
    return ("<h2>Output: concise mode (estimate)</h2>"
            f'<p class="sub">An estimate, not in the totals: {escape(str(estimate.get("source")))}'
            f" · {int(_num(estimate.get('est_saved_output_tokens'))):,} output tokens, "
            f"{_money(estimate.get('est_saved_usd'))} $</p>"
            f'<table class="layers">{head}{"".join(rows)}</table>')


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _pairs(value: Any) -> list[tuple[float, float]]:
    out = []
    for item in value or ():
        if isinstance(item, Mapping):
            a, b = item.get("x"), item.get("y")
        elif isinstance(item, (list, tuple)) and len(item) >= 2:
            a, b = item[0], item[1]
        else:
            continue
        if a is None or b is None:
            continue
        out.append((_num(a, math.nan), _num(b, math.nan)))
    return out


def _charts(report: Mapping[str, Any]) -> str:
    price_as = str(report.get("price_as", "?"))
    layers = [la for la in report.get("layers") or () if la.get("status", "ran") == "ran"]
    before = _num(report.get("cost_per_mtok_before"))
    steps = [("before", before)] + [(str(la.get("layer")), _num(la.get("saved_per_mtok")))
                                    for la in layers]
    waterfall = _svg.waterfall(steps, start_label="before", end_label="after",
                               unit=f"$ / 1M tokens ({price_as})",
                               title="Savings waterfall per layer")
    bars = _svg.bar_pair([("before", before), ("after", _num(report.get("cost_per_mtok_after")))],
                         unit=f"$ / 1M tokens ({price_as})", title="Cost per 1M tokens")
    cache = report.get("cache") or {}
    hist = _svg.histogram(
        [("hit (guard accepted)", [_num(v) for v in cache.get("accepted") or ()], _svg.GOOD),
         ("rejected by guard", [_num(v) for v in cache.get("rejected") or ()], _svg.BAD)],
        low=0.5, high=1.0, bins=10, x_label="similarity (cosine) of the best candidate",
        title="Cache-hit similarity histogram")
    compression = report.get("compression") or {}
    comp = _svg.scatter([("compressed message", _pairs(compression.get("points")), _svg.BASE)],
                        x_label="compression ratio (tokens before / after)",
                        y_label="retention estimate", title="Compression ratio vs retention",
                        name="compression", y_range=(0.0, 1.05))
    budget = report.get("budget") or {}
    bud = _svg.scatter([("answer", _pairs(budget.get("points")), _svg.ACCENT)],
                       x_label="predicted max_tokens", y_label="actual answer tokens",
                       title="Budget coverage", name="budget", log=True, diagonal=True)
    coverage = budget.get("coverage")
    return '<div class="grid">' + "".join([
        _figure(waterfall, "What each layer removed, applied in pipeline order to what the "
                "previous layers left, priced as " + price_as + " per 1M tokens of the original "
                "traffic."),
        _figure(bars, "Cost per 1M tokens of the original traffic (input and output), before "
                "and after the layers."),
        _figure(hist, f"Cache lookups that found a candidate: {int(_num(cache.get('hits')))} "
                f"hits of {int(_num(cache.get('lookups')))} lookups. Only guard-accepted hits "
                "are counted as savings."),
        _figure(comp, "One point per call the compression changed: ratio achieved (tokens "
                "before / after, over the text it compressed) and the compressor's retention "
                "estimate."),
        _figure(bud, "Predicted cap vs actual answer length; points above the dashed line "
                "would have been cut. Coverage: " + _pct(coverage) + "."),
    ]) + "</div>"


def _cache_examples(cache: Mapping[str, Any]) -> str:
    examples = cache.get("examples") or []
    if not examples:
        return '<p class="note">No cache hits.</p>'
    rows = "".join(
        f"<tr><td>{escape(str(e.get('kind', '')))}</td>"
        f'<td class="n">{_num(e.get("similarity")):.3f}</td>'
        f'<td class="n">{_opt3(e.get("verifier"))}</td>'
        f"<td>{escape(str(e.get('query', ''))[:300])}</td>"
        f"<td>{escape(str(e.get('matched', ''))[:300])}</td></tr>"
        for e in examples[:50])
    return ("<table><tr><th>kind</th><th>similarity</th><th>guard P(same)</th><th>request</th>"
            f"<th>answered from</th></tr>{rows}</table>")


def _answered_by(answer: Mapping[str, Any]) -> str:
    if not answer.get("cached"):
        return "model"
    similarity = answer.get("similarity")
    return "cache hit" if similarity is None else f"cache hit ({_num(similarity):.3f})"


def _answers(answers: Sequence[Mapping[str, Any]]) -> str:
    if not answers:
        return ""
    rows = "".join(
        f"<tr><td>{escape(str(a.get('question', '')))}</td>"
        f'<td class="ans">{escape(str(a.get("raw", "")))}</td>'
        f'<td class="ans">{escape(str(a.get("lean", "")))}</td>'
        f"<td>{_answered_by(a)}</td></tr>"
        for a in answers)
    return ("<h2>Answers side by side</h2><table class=\"answers\"><tr><th>question</th>"
            f"<th>raw</th><th>through lean()</th><th>answered by</th></tr>{rows}</table>")


def render_html(report: Mapping[str, Any]) -> str:
    """One self-contained HTML page for ``report`` (see the module docstring)."""
    if not isinstance(report, Mapping):
        raise TypeError(f"report must be a mapping, got {type(report).__name__}")
    title = str(report.get("title") or "tokenlean report")
    source = report.get("source") or {}
    source_text = ", ".join(f"{k}: {v}" for k, v in source.items()) if isinstance(
        source, Mapping) else str(source)
    replayed = ""
    if report.get("preset"):
        order = " → ".join(str(name) for name in report.get("layer_order") or ())
        replayed = f" · preset {report['preset']}" + (f" ({order})" if order else "")
    sub = (f"{escape(str(report.get('kind', 'audit')))}{escape(replayed)} · priced as "
           f"{escape(str(report.get('price_as', '?')))} · {escape(source_text)} · "
           f"generated {escape(str(report.get('generated_at', '')))}")
    notes = report.get("notes") or []
    notes_html = ("<ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>"
                  if notes else "")
    pretty = escape(json.dumps(_clean(report), indent=2, ensure_ascii=False))
    body = "".join([
        f"<main><h1>{escape(title)}</h1><p class=\"sub\">{sub}</p>",
        _cards(report),
        "<h2>Savings</h2>", _charts(report),
        "<h2>Per layer</h2>", _layer_table(report.get("layers") or []),
        _output_estimate(report.get("output_estimate")),
        "<h2>Cache hits</h2>", _cache_examples(report.get("cache") or {}),
        _answers(report.get("answers") or []),
        "<h2>How this was measured</h2>", notes_html,
        f"<h2>Data</h2><details><summary>the report as JSON</summary><pre>{pretty}</pre>"
        "</details></main>",
    ])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}"
            f'<script type="application/json" id="{EMBED_ID}">{_embed(report)}</script>'
            f"<script>{_JS}</script></body></html>\n")


def write_html(report: Mapping[str, Any], path: Any) -> Any:
    """Render ``report`` and write it to ``path`` (UTF-8); returns the path."""
    from pathlib import Path

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(report), encoding="utf-8")
    return out
