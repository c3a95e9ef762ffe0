"""The viewer's HTML pages, rendered on the server from the same dicts the API returns.
Plain HTML, one stylesheet and one small script shipped with the package (`static/`): no
build step, nothing fetched from elsewhere. Every value from the run or the store is escaped.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any, Mapping, Sequence
from urllib.parse import quote, urlencode

from pdc.analyze.store import SORTABLE
from pdc.analyze.view.data import NO_HARVEST

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def layout(title: str, body: str, has_harvest: bool) -> str:
    nav = ['<a href="/">run</a>', '<a href="/search">search</a>', '<a href="/probe">probe</a>',
           '<a href="/ablate">ablate</a>']
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)} · pdc view</title>
<link rel="stylesheet" href="/static/view.css"><script src="/static/view.js" defer></script></head>
<body><header><span class="brand">pdc view</span> {' '.join(nav)}
{'' if has_harvest else '<span class="warn">no harvest loaded</span>'}</header>
<main>{body}</main></body></html>"""


def no_harvest() -> str:
    return f'<p class="notice" id="no-harvest">{e(NO_HARVEST)}</p>'


# ---- small inline SVGs ------------------------------------------------------------------------


def line_chart(series: Mapping[str, Sequence[Sequence[float]]], width: int = 640, height: int = 220,
               log_y: bool = True) -> str:
    """Lines of (x, y) points with a legend; log y when every value is positive."""
    points = [(x, y) for s in series.values() for x, y in s]
    if not points:
        return '<p class="muted">no records yet</p>'
    log_y = log_y and all(y > 0 for _, y in points)
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs, ys = [x for x, _ in points], [ty(y) for _, y in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad, legend = 40, 14 * len(series)
    sx = lambda x: pad + (x - x0) / (x1 - x0) * (width - pad - 10)  # noqa: E731
    sy = lambda y: 10 + (1 - (ty(y) - y0) / (y1 - y0)) * (height - 30)  # noqa: E731
    parts = [f'<svg class="chart" width="{width}" height="{height + legend}" viewBox="0 0 {width} {height + legend}">',
             f'<line x1="{pad}" y1="{height - 20}" x2="{width - 10}" y2="{height - 20}" class="axis"/>',
             f'<line x1="{pad}" y1="10" x2="{pad}" y2="{height - 20}" class="axis"/>',
             f'<text x="2" y="16" class="tick">{e(fmt(10 ** y1 if log_y else y1))}</text>',
             f'<text x="2" y="{height - 22}" class="tick">{e(fmt(10 ** y0 if log_y else y0))}</text>',
             f'<text x="{pad}" y="{height - 6}" class="tick">step {e(fmt(x0))}</text>',
             f'<text x="{width - 70}" y="{height - 6}" class="tick">{e(fmt(x1))}</text>']
    for i, (name, values) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        if len(values) == 1:
            parts.append(f'<circle cx="{sx(values[0][0]):.1f}" cy="{sy(values[0][1]):.1f}" r="3" fill="{color}"/>')
        y = height + 12 + 14 * i  # a colour swatch per line: the tick style greys the label's text
        parts.append(f'<rect x="{pad + 4}" y="{y - 6}" width="14" height="3" fill="{color}"/>'
                     f'<text x="{pad + 22}" y="{y}" fill="{color}" class="tick">'
                     f'{e(name)} (last {e(fmt(values[-1][1]))})</text>')
    return "".join(parts) + "</svg>"


def sparkline(counts: Sequence[int], width: int = 96, height: int = 20) -> str:
    """A CI histogram as bars, log-scaled counts (the first bins dwarf the rest)."""
    if not counts:
        return ""
    top = max(math.log1p(c) for c in counts) or 1.0
    w = width / len(counts)
    bars = "".join(f'<rect x="{i * w:.1f}" y="{height - math.log1p(c) / top * height:.1f}" width="{max(w - 1, 1):.1f}" '
                   f'height="{math.log1p(c) / top * height:.1f}"/>' for i, c in enumerate(counts))
    return f'<svg class="spark" width="{width}" height="{height}">{bars}</svg>'


def histogram_chart(edges: Sequence[float], counts: Sequence[int], width: int = 420, height: int = 140) -> str:
    if not counts:
        return '<p class="muted">no histogram</p>'
    top = max(math.log1p(c) for c in counts) or 1.0
    w = (width - 20) / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = math.log1p(c) / top * (height - 30)
        label = f"CI {edges[i]:.3g}–{edges[i + 1]:.3g}: {c}" if i + 1 < len(edges) else str(c)
        bars.append(f'<rect x="{10 + i * w:.1f}" y="{height - 20 - h:.1f}" width="{max(w - 2, 1):.1f}" height="{h:.1f}">'
                    f'<title>{e(label)}</title></rect>')
    return (f'<svg class="hist" width="{width}" height="{height}">{"".join(bars)}'
            f'<text x="10" y="{height - 5}" class="tick">CI {e(fmt(edges[0]))}</text>'
            f'<text x="{width - 40}" y="{height - 5}" class="tick">{e(fmt(edges[-1]))}</text></svg>')


def strip(pieces: Sequence[str], ci: Sequence[float], act: Sequence[float] | None, center: int | None,
          indent: int = 0) -> str:
    """Tokens shaded by CI (alpha = CI); hover shows CI and activation. `indent` (in characters)
    lines the example positions of a page's strips up when a window is cut at the file's start."""
    cells = [f'<span class="pad">{" " * indent}</span>'] if indent > 0 else []
    for i, piece in enumerate(pieces):
        c = float(ci[i]) if i < len(ci) else 0.0
        tip = f"CI {c:.4f}" + (f" · act {float(act[i]):.4f}" if act is not None and i < len(act) else "")
        cls = "tok center" if i == center else "tok"
        cells.append(f'<span class="{cls}" style="background: rgba(214, 39, 40, {min(max(c, 0.0), 1.0):.3f})" '
                     f'title="{e(tip)}" data-ci="{c:.6g}">{e(piece)}</span>')
    return f'<div class="strip">{"".join(cells)}</div>'


# ---- pages --------------------------------------------------------------------------------------


def _manifest_text(manifest: dict[str, Any]) -> str:
    """The harvest manifest as JSON, each key on one line (its bin edges and sites included)."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(manifest.items())]
    return "{\n" + ",\n".join(lines) + "\n}"


def run_page(info: dict[str, Any]) -> str:
    losses = {k: v for k, v in info["curves"].items() if k.startswith("loss/")}
    evals = {k: v for k, v in info["curves"].items() if k.startswith("eval/")}
    rows = "".join(
        f'<tr><td><a class="site-link" href="/site/{quote(s["name"])}">{e(s["name"])}</a></td><td>{fmt(s["C"])}</td>'
        f'<td>{fmt(s["train_ci_l0"])}</td><td>{fmt(s["train_alive"])}</td><td>{fmt(s["harvest_ci_l0"])}</td>'
        f'<td>{fmt(s["harvest_alive"])}</td></tr>' for s in info["sites"])
    prov = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in info["provenance"].items())
    harvest = (f'<pre class="manifest">{e(_manifest_text(info["harvest"]))}</pre>' if info["harvest"] else
               no_harvest())
    body = f"""<h1>{e(info["spec"])}</h1>
<table class="kv"><tr><td>run</td><td>{e(info["run"])}</td></tr>
<tr><td>decomposition hash</td><td><code>{e(info["decomposition_hash"])}</code></td></tr>
<tr><td>runtime hash</td><td><code>{e(info["runtime_hash"])}</code></td></tr>
<tr><td>overrides</td><td>{e(" ".join(info["overrides"]) or "none")}</td></tr>
<tr><td>tokenizer</td><td>{e(info["tokenizer"].get("kind"))}</td></tr></table>
<h2>Sites</h2>
<table class="grid" id="sites"><tr><th>site</th><th>C</th><th>CI-L0 (train)</th><th>alive (train)</th>
<th>CI-L0 (harvest)</th><th>alive (harvest)</th></tr>{rows}</table>
<h2>Losses</h2>{line_chart(losses)}
<h2>Eval</h2>{line_chart(evals, log_y=False)}
<h2>Harvest</h2>{harvest}
<h2>Resolved spec</h2><pre class="spec">{e(info["spec_text"])}</pre>
<details><summary>provenance (where each written value comes from)</summary>
<table class="grid">{prov}</table></details>"""
    return layout(info["spec"], body, info["harvest"] is not None)


def site_page(page: dict[str, Any]) -> str:
    site = page["site"]
    base = f"/site/{quote(site)}"

    def link(sort: str, descending: bool, offset: int = 0) -> str:
        return base + "?" + urlencode({"sort": sort, "order": "desc" if descending else "asc", "offset": offset,
                                       "limit": page["limit"]})

    heads = []
    for column in ("component", "density", "mean_ci", "mean_abs_act", "firing", "v_norm", "u_norm"):
        active = column == page["sort"]
        desc = not (active and page["descending"])
        arrow = (" ▼" if page["descending"] else " ▲") if active else ""
        heads.append(f'<th><a class="sort" data-sort="{column}" href="{e(link(column, desc))}">{e(column)}{arrow}</a></th>')
    rows = "".join(
        f'<tr><td><a class="component-link" href="/component/{quote(site)}/{r["component"]}">{r["component"]}</a></td>'
        f'<td>{fmt(r["density"])}</td><td>{fmt(r["mean_ci"])}</td><td>{fmt(r["mean_abs_act"])}</td>'
        f'<td>{fmt(r["firing"])}</td><td>{fmt(r["v_norm"])}</td><td>{fmt(r["u_norm"])}</td>'
        f'<td>{sparkline(r["histogram"])}</td></tr>' for r in page["components"])
    offset, limit, total = page["offset"], page["limit"], page["total"]
    prev = f'<a href="{e(link(page["sort"], page["descending"], max(offset - limit, 0)))}">« previous</a>' \
        if offset > 0 else ""
    nxt = f'<a id="next" href="{e(link(page["sort"], page["descending"], offset + limit))}">next »</a>' \
        if offset + limit < total else ""
    body = f"""<h1>{e(site)}</h1>
<p>{total} components · sorted by <b id="sorted-by">{e(page["sort"])}</b> {"descending" if page["descending"] else
                                                                           "ascending"} ·
rows {offset + 1 if total else 0}–{min(offset + limit, total)} {prev} {nxt}</p>
<table class="grid" id="components"><tr>{"".join(heads)}<th>CI histogram</th></tr>{rows}</table>"""
    return layout(site, body, True)


def component_page(data: dict[str, Any]) -> str:
    site, row = data["site"], data["component"]
    c = row["component"]
    strips: dict[str, list[str]] = {"top": [], "random": []}
    widest = max((sum(len(p) for p in ex["pieces"][:ex["center"]]) for ex in data["examples"]), default=0)
    for ex in data["examples"]:
        indent = widest - sum(len(p) for p in ex["pieces"][:ex["center"]])
        strips.setdefault(ex["kind"], []).append(
            f'<div class="example"><span class="pos">@{ex["position"]}</span>'
            f'{strip(ex["pieces"], ex["ci"], ex["act"], ex["center"], indent)}</div>')

    def pmi_table(direction: str) -> str:
        rows = "".join(f'<tr><td>{e(r["side"])}</td><td class="piece">{e(r["piece"])}</td><td>{r["token"]}</td>'
                       f'<td>{fmt(r["count"])}</td><td>{fmt(r["pmi"])}</td></tr>' for r in data["pmi"][direction])
        return (f'<table class="grid pmi" id="pmi-{direction}"><tr><th>side</th><th>token</th><th>id</th>'
                f'<th>count</th><th>PMI</th></tr>{rows}</table>')

    neighbors = "".join(
        f'<tr><td><a href="/component/{quote(n["other_site"])}/{n["other_component"]}">{e(n["other_site"])} '
        f'#{n["other_component"]}</a></td><td>{fmt(n["together"])}</td><td>{fmt(n["score"])}</td></tr>'
        for n in data["neighbors"])
    ablate = "/ablate?" + urlencode({"site": site, "component": c})
    body = f"""<h1><a href="/site/{quote(site)}">{e(site)}</a> · component {c}</h1>
<table class="kv"><tr><td>density</td><td>{fmt(row["density"])}</td><td>mean CI</td><td>{fmt(row["mean_ci"])}</td>
<td>mean |act|</td><td>{fmt(row["mean_abs_act"])}</td></tr>
<tr><td>firing</td><td>{fmt(row["firing"])} of {fmt(row["tokens"])}</td><td>‖v‖</td><td>{fmt(row["v_norm"])}</td>
<td>‖u‖</td><td>{fmt(row["u_norm"])}</td></tr></table>
<p><a href="{e(ablate)}">ablate this component…</a> · <a href="/probe?{e(urlencode({"site": site, "components": c}))}">probe it…</a></p>
<h2>CI histogram</h2>{histogram_chart(data["histogram"]["edges"], data["histogram"]["counts"])}
<h2>Top examples (by CI)</h2><div id="top-examples">{"".join(strips["top"]) or '<p class="muted">none</p>'}</div>
<h2>Random firing examples</h2><div id="random-examples">{"".join(strips["random"]) or '<p class="muted">none</p>'}</div>
<div class="cols"><div><h2>Input tokens (PMI)</h2>{pmi_table("input")}</div>
<div><h2>Output tokens (PMI)</h2>{pmi_table("output")}</div></div>
<h2>Co-active components ({e(data["neighbor_score"] or "score")})</h2>
<table class="grid" id="neighbors"><tr><th>component</th><th>together</th><th>score</th></tr>{neighbors}</table>"""
    return layout(f"{site} #{c}", body, True)


def search_page(query: str, result: dict[str, Any] | None, harvest: bool) -> str:
    form = (f'<form action="/search" method="get"><input name="q" id="q" value="{e(query)}" '
            f'placeholder="a token or a string (#123 for an id)"> <button>search</button></form>')
    if not harvest:
        return layout("search", f"<h1>Search</h1>{no_harvest()}", False)
    table = ""
    if result is not None:
        toks = " ".join(f'<code>{e(t["piece"])}</code> ({t["id"]})' for t in result["tokens"])
        rows = "".join(
            f'<tr><td><a href="/component/{quote(r["site"])}/{r["component"]}">{e(r["site"])} #{r["component"]}</a></td>'
            f'<td class="piece">{e(r["piece"])}</td><td>{fmt(r["count"])}</td><td>{fmt(r["pmi"])}</td>'
            f'<td>{fmt(r["density"])}</td></tr>' for r in result["components"])
        table = (f"<p>tokens: {toks or 'none'}</p><table class=\"grid\" id=\"results\"><tr><th>component</th>"
                 f"<th>token</th><th>firing count</th><th>PMI</th><th>density</th></tr>{rows}</table>")
    return layout("search", f"<h1>Search</h1>{form}{table}", True)


def probe_page(sites: Sequence[str], harvest: bool) -> str:
    options = '<option value="">top firing per site</option>' + "".join(
        f'<option value="{e(s)}">{e(s)}</option>' for s in sites)
    body = f"""<h1>Probe</h1>
<p>Type text: the CI of chosen components of one site (or each site's top firing ones) per token, computed
live by the run's CI network.</p>
<form id="probe-form"><textarea id="probe-text" rows="3" cols="80">def __init__(self, name):</textarea><br>
site <select id="probe-site">{options}</select>
components <input id="probe-components" placeholder="e.g. 3, 17 (needs a site)">
<button id="probe-run" type="submit">probe</button></form>
<div id="probe-status" class="muted"></div><div id="probe-result"></div>"""
    return layout("probe", body, harvest)


def ablate_page(sites: Sequence[str], harvest: bool) -> str:
    options = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in sites)
    body = f"""<h1>Ablate</h1>
<p>Choose components and type text: the target's next-token distribution after the text, with and without them
(each ablated component taken out of its site's weight).</p>
<form id="ablate-form"><textarea id="ablate-text" rows="3" cols="80">def __init__(self, name):</textarea><br>
<span id="ablate-list"></span><br>
site <select id="ablate-site">{options}</select> component <input id="ablate-component" size="6">
<button id="ablate-add" type="button">add</button> <button id="ablate-run" type="submit">ablate</button></form>
<div id="ablate-status" class="muted"></div><div id="ablate-result"></div>"""
    return layout("ablate", body, harvest)


__all__ = ["run_page", "site_page", "component_page", "search_page", "probe_page", "ablate_page", "SORTABLE"]
