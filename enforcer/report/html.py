"""The compliance report as one self-contained HTML file (pure): inline CSS, inline JavaScript
that draws the charts as SVG from a JSON block in the page, no external resource of any kind —
it opens from a file, an e-mail attachment or an air-gapped laptop alike.

The tables are rendered here, so every number is in the page even with scripts off; the charts
are drawn by the script, and every bar and point carries its numbers as ``data-*`` attributes
(which is also how the browser test checks them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from enforcer.report.model import Group, Report, TimePoint

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1b1f24;
background:#f6f7f9}
header{background:#14213d;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}main{padding:16px 32px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff2;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{flex:1;min-width:150px;background:#fff;
border:1px solid #dde1e6;border-radius:8px;padding:12px 16px}.card b{display:block;font-size:26px}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#6e7781}svg{width:100%;height:auto}
.legend span{display:inline-block;margin-right:14px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px;border-radius:2px}code{font-size:12px}
"""

_JS = """
(function(){
const data=JSON.parse(document.getElementById('report-data').textContent);
const NS='http://www.w3.org/2000/svg';
const COLORS={compliant:'#2da44e',noncompliant:'#cf222e',uncounted:'#afb8c1'};
function el(name,attrs,parent){const e=document.createElementNS(NS,name);
 for(const k in attrs){e.setAttribute(k,attrs[k]);}if(parent){parent.appendChild(e);}return e;}
function text(parent,x,y,s,anchor){const t=el('text',{x:x,y:y,'font-size':12,
 'text-anchor':anchor||'start',fill:'#1b1f24'},parent);t.textContent=s;return t;}
function stacked(id,groups){const host=document.getElementById(id);if(!host){return;}
 const row=26,left=200,width=700,svg=el('svg',{viewBox:'0 0 1140 '+(groups.length*row+10),
 role:'img'},host);
 const max=Math.max(1,...groups.map(g=>g.objects));
 groups.forEach((g,i)=>{let x=left;const y=i*row+4;
  text(svg,left-8,y+15,g.name,'end');
  ['compliant','noncompliant','uncounted'].forEach(state=>{const n=g[state];if(!n){return;}
   const w=width*n/max;el('rect',{x:x,y:y,width:w,height:row-8,fill:COLORS[state],
    'class':'bar','data-group':g.name,'data-state':state,'data-count':n},svg);x+=w;});
  text(svg,x+6,y+15,g.objects+' objects'+(g.compliance===null?'':
   ' \\u00b7 '+g.compliance.toFixed(1)+'% compliant'));});}
function timeline(id,points){const host=document.getElementById(id);if(!host||!points.length){
 return;}const W=1100,H=240,L=50,B=30,svg=el('svg',{viewBox:'0 0 '+(W+20)+' '+(H+10),
 role:'img'},host);
 [0,25,50,75,100].forEach(p=>{const y=H-B-(H-B-10)*p/100;el('line',{x1:L,x2:W,y1:y,y2:y,
  stroke:'#eceff2'},svg);text(svg,L-6,y+4,p+'%','end');});
 const step=points.length>1?(W-L)/(points.length-1):0;
 const xy=points.map((p,i)=>[L+i*step,H-B-(H-B-10)*(p.counted?p.compliant/p.counted:0)]);
 el('polyline',{points:xy.map(p=>p.join(',')).join(' '),fill:'none',stroke:'#0969da',
  'stroke-width':2,'class':'trend'},svg);
 points.forEach((p,i)=>{const c=el('circle',{cx:xy[i][0],cy:xy[i][1],r:3.5,fill:'#0969da',
  'class':'point','data-end':p.end,'data-compliant':p.compliant,'data-counted':p.counted},svg);
  el('title',{},c).textContent=p.end+': '+p.compliant+'/'+p.counted+' compliant';});
 text(svg,L,H-8,points[0].end.replace('T',' ').slice(0,16));
 text(svg,W,H-8,points[points.length-1].end.replace('T',' ').slice(0,16),'end');}
function bars(id,counts){const host=document.getElementById(id);if(!host){return;}
 const names=Object.keys(counts);const row=24,svg=el('svg',{viewBox:'0 0 1140 '+
 (names.length*row+10),role:'img'},host);const max=Math.max(1,...Object.values(counts));
 names.forEach((name,i)=>{const y=i*row+4;text(svg,192,y+14,name,'end');
  el('rect',{x:200,y:y,width:800*counts[name]/max,height:row-8,fill:'#8250df','class':'bar',
   'data-group':name,'data-count':counts[name]},svg);
  text(svg,206+800*counts[name]/max,y+14,String(counts[name]));});}
stacked('chart-buckets',data.buckets);stacked('chart-keys',data.keys);
timeline('chart-timeline',data.timeline);bars('chart-actions',data.actions);
document.body.setAttribute('data-charts','drawn');
})();
"""


def render_html(report: Report, *, title: str, generated: datetime, source: str) -> str:
    data = {
        "buckets": [_group_data(g) for g in report.buckets],
        "keys": [_group_data(g) for g in report.keys],
        "timeline": [_point_data(p) for p in report.timeline],
        "actions": dict(report.total.actions.most_common()),
    }
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    sections = [
        _cards(report),
        _section(
            "Compliance by bucket",
            '<div id="chart-buckets"></div>' + _legend() + _group_table("bucket", report.buckets),
        ),
        _section(
            "Compliance by External Key",
            '<div id="chart-keys"></div>' + _group_table("EK", report.keys),
        ),
        _section("Compliance over time", '<div id="chart-timeline"></div>'),
        _section("Actions", '<div id="chart-actions"></div>'),
        _failures(report),
        _noncompliant(report),
    ]
    span = ""
    if report.first and report.last:
        span = f" · records from {_time(report.first)} to {_time(report.last)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{report.records:,} records from "
        f"{escape(source)}{span} · generated {_time(generated)}</p></header><main>"
        + "".join(sections)
        + f'</main><script type="application/json" id="report-data">{payload}</script>'
        f"<script>{_JS}</script></body></html>\n"
    )


def _group_data(group: Group) -> dict[str, Any]:
    uncounted = group.objects - group.compliant - group.noncompliant
    return {"name": group.name, "objects": group.objects, "compliant": group.compliant,
            "noncompliant": group.noncompliant, "uncounted": uncounted,
            "compliance": group.compliance}  # fmt: skip


def _point_data(point: TimePoint) -> dict[str, Any]:
    return {"end": point.end.isoformat(), "records": point.records,
            "compliant": point.compliant, "counted": point.counted}  # fmt: skip


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _section(title: str, body: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{body}</section>"


def _cards(report: Report) -> str:
    total = report.total
    share = "-" if total.compliance is None else f"{total.compliance:.1f}%"
    cards = [
        ("objects", f"{total.objects:,}", ""),
        ("compliant", f"{total.compliant:,}", "ok"),
        ("not compliant", f"{total.noncompliant:,}", "bad" if total.noncompliant else "ok"),
        ("compliance", share, "ok" if not total.noncompliant else "bad"),
        ("failures", f"{len(report.failures):,}", "bad" if report.failures else "ok"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card" data-card="{escape(name)}">'
            f'<span class="muted">{escape(name)}</span><b class="{css}">{value}</b></div>'
            for name, value, css in cards
        )
        + "</div>"
    )


def _legend() -> str:
    items = (("#2da44e", "compliant"), ("#cf222e", "not compliant"), ("#afb8c1", "not counted"))
    return (
        '<p class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{n}</span>' for c, n in items)
        + "</p>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, data: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_td(value) for value in row) + "</tr>" for row in rows)
    return f"<table{data}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: object) -> str:
    if isinstance(value, int | float):
        text = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        return f'<td class="n">{text}</td>'
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))


def _group_table(label: str, groups: list[Group]) -> str:
    rows = [
        [g.name, g.objects, g.compliant, g.noncompliant,
         "-" if g.compliance is None else f"{g.compliance:.1f}%",
         _counts(g.verdicts), _counts(g.actions)]
        for g in groups
    ]  # fmt: skip
    headers = [label, "objects", "compliant", "not compliant", "compliance", "verdicts", "actions"]
    return _table(headers, rows, data=f' data-table="{escape(label)}"')


def _failures(report: Report) -> str:
    if not report.failures:
        return _section("Failures", '<p class="ok">No object failed.</p>')
    reasons = _table(["reason", "objects"], report.failure_reasons.most_common())
    listed = _table(
        ["bucket", "key", "EK", "reason", "when"],
        [[f.bucket, f.key, f.required_key, f.reason, _time(f.timestamp)] for f in report.failures],
        data=' data-table="failures"',
    )
    return _section("Failures", reasons + listed)


def _noncompliant(report: Report) -> str:
    if not report.noncompliant_total:
        return _section("Objects still not compliant", '<p class="ok">None.</p>')
    shown = len(report.noncompliant)
    note = "" if shown == report.noncompliant_total else (
        f'<p class="muted">First {shown:,} of {report.noncompliant_total:,}.</p>')  # fmt: skip
    rows = [
        [o.bucket, o.key, o.version_id or "", o.verdict, o.action,
         o.observed_kms_key or o.observed_sse or "", o.required_key]
        for o in report.noncompliant
    ]  # fmt: skip
    headers = ["bucket", "key", "version", "verdict", "action", "encrypted with", "required EK"]
    return _section(
        "Objects still not compliant",
        note + _table(headers, rows, data=' data-table="noncompliant"'),
    )
