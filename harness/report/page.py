"""The HTML report's shell: the page around the body (with its CSP: no scripts, no fetches)
and the inline stylesheet, so `index.html` stands alone."""

from __future__ import annotations

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" \
content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="generator" content="DM Harness">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""

CSS = """
:root{--ink:#0f172a;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--brand:#1f4e79;
--pass:#166534;--pass-bg:#dcfce7;--fail:#991b1b;--fail-bg:#fee2e2;--broken:#92400e;
--broken-bg:#fef3c7;--skip:#475569;--skip-bg:#f1f5f9}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.45;
font:14px/1.45 "Segoe UI",system-ui,-apple-system,"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
header.top,main,footer{max-width:1160px;margin:0 auto;padding:0 24px}
header.top{padding-top:28px;padding-bottom:8px}
.brand{font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:var(--brand);
font-weight:600}
h1{font-size:26px;margin:4px 0 2px}
h2{font-size:19px;margin:32px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:0}
h4{font-size:14px;margin:18px 0 8px}
#trend h3{margin:20px 0 6px}
.subject{font-size:16px;margin:2px 0}
.muted{color:var(--muted)}
.small{font-size:12px}
nav{margin-top:10px}
nav a{color:var(--brand);text-decoration:none;margin-right:16px;font-weight:600;font-size:13px}
a{color:var(--brand)}
code,pre{font-family:"Cascadia Mono",Consolas,"DejaVu Sans Mono","Liberation Mono",monospace;
font-size:12px}
.verdict{margin-top:18px;padding:18px 22px;border-radius:8px;border:1px solid var(--line);
border-left:8px solid var(--muted);background:#fff}
.verdict.certified{border-left-color:var(--pass);background:var(--pass-bg)}
.verdict.not-certified{border-left-color:var(--fail);background:var(--fail-bg)}
.verdict.inconclusive{border-left-color:#d97706;background:var(--broken-bg)}
.verdict-label{font-size:12px;text-transform:uppercase;letter-spacing:.08em;color:var(--muted)}
.verdict-status{font-size:30px;font-weight:700}
.verdict-where{font-size:13px;font-weight:600;color:var(--muted,#475569);margin-top:2px}
.certified .verdict-status{color:var(--pass)}
.not-certified .verdict-status{color:var(--fail)}
.inconclusive .verdict-status{color:var(--broken)}
.reasons{margin:8px 0 12px;padding-left:20px}
.chips{display:flex;flex-wrap:wrap;gap:8px;align-items:center}
.chip{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
border:1px solid transparent;white-space:nowrap}
.chip.total{background:#fff;border-color:var(--line)}
.chip.passed,.chip.certified{background:var(--pass-bg);color:var(--pass);border-color:#86efac}
.chip.failed,.chip.not-certified{background:var(--fail-bg);color:var(--fail);
border-color:#fca5a5}
.chip.broken,.chip.inconclusive{background:var(--broken-bg);color:var(--broken);
border-color:#fcd34d}
.chip.skipped,.chip.none{background:var(--skip-bg);color:var(--skip);border-color:#cbd5e1}
table{border-collapse:collapse;background:#fff}
.matrix{width:100%;border:1px solid var(--line)}
.matrix th,.matrix td{border:1px solid var(--line);padding:8px 10px;text-align:center}
.matrix th[scope=row]{text-align:left;font-weight:600}
.matrix thead th{background:#f1f5f9;font-size:13px}
.cell a.result{display:block;font-weight:700;text-decoration:none;color:inherit}
.cell.passed{background:var(--pass-bg);color:var(--pass)}
.cell.failed{background:var(--fail-bg);color:var(--fail)}
.cell.broken{background:var(--broken-bg);color:var(--broken)}
.cell.skipped,.cell.none{background:var(--skip-bg);color:var(--skip)}
.legend{margin-top:8px;color:var(--muted)}
.data{width:100%;border:1px solid var(--line);margin:6px 0}
.data th,.data td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;
vertical-align:top}
.data thead th{background:#f1f5f9;font-size:12px;font-weight:600}
.data caption{caption-side:bottom;text-align:left;font-size:12px;color:var(--muted);
padding-top:4px}
.window td{font-variant-numeric:tabular-nums;white-space:nowrap}
.window .num{text-align:right}
.window tr.inside td{background:#fff1f2}
.window tr.context td{color:var(--muted)}
.env th{width:220px;color:var(--muted);font-weight:600}
.test{background:#fff;border:1px solid var(--line);border-left:6px solid var(--muted);
border-radius:8px;padding:16px 20px;margin:16px 0}
.test.passed{border-left-color:#22c55e}
.test.failed{border-left-color:#dc2626}
.test.broken{border-left-color:#d97706}
.test-head{display:flex;gap:12px;align-items:center;justify-content:space-between}
.message{background:#f8fafc;border:1px solid var(--line);padding:10px;white-space:pre-wrap;
overflow-wrap:anywhere;margin:8px 0}
.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px;
margin:12px 0}
.figures div{border:1px solid var(--line);border-radius:6px;padding:6px 10px}
.figures dt{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.figures dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
img.plot{display:block;width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
img.trend-plot{display:block;max-width:720px;width:100%;height:auto}
.scroll{overflow-x:auto}
details.events{margin:8px 0}
details summary{cursor:pointer;color:var(--brand);font-size:13px}
footer{padding-top:24px;padding-bottom:32px}
@media print{body{background:#fff}.test{break-inside:avoid-page}nav{display:none}}
"""
