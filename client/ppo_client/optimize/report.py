"""The run's HTML report: the score curve, the best image of each iteration, every prompt."""

from __future__ import annotations

import html
from pathlib import Path


def _curve(series: dict[str, list[float]], width: int = 560, height: int = 220) -> str:
    values = [v for s in series.values() for v in s]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    count = max(len(s) for s in series.values())
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]

    def point(i, v):
        x = 40 + (width - 60) * (i / max(count - 1, 1))
        y = height - 30 - (height - 50) * ((v - low) / span)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="11">']
    parts.append(f'<line x1="40" y1="{height - 30}" x2="{width - 20}" y2="{height - 30}" stroke="#888"/>')
    parts.append(f'<text x="5" y="{height - 30}">{low:.2f}</text><text x="5" y="25">{high:.2f}</text>')
    parts.append(f'<text x="{width / 2 - 20:.0f}" y="{height - 8}">iteration</text>')
    for n, (label, data) in enumerate(series.items()):
        colour = colours[n % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(point(i, v) for i, v in enumerate(data))}"/>')
        parts.append(f'<text x="{width - 200}" y="{20 + 14 * n}" fill="{colour}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(folder: Path, config: dict, records: list[dict], summary: dict) -> Path:
    e = html.escape
    series = {"best learned score so far": summary.get("best_so_far", [])}
    if "true_best_so_far" in summary:
        series["its true score (virtual user)"] = summary["true_best_so_far"]
    rows = []
    for record in records:
        best = max(record["prompts"], key=lambda p: p["score"])
        prompts = "".join(
            f"<li>{e(p['prompt'])} <b>{p['score']:.2f}</b>"
            + (f" (true {p['true_score']:.2f})" if "true_score" in p else "")
            + (f" <i>{e(p.get('description', ''))}</i>" if p.get("description") else "")
            + "</li>"
            for p in sorted(record["prompts"], key=lambda p: -p["score"])
        )
        feedback = f"<p class=f>feedback: {e(record['feedback'])}</p>" if record.get("feedback") else ""
        rows.append(
            f"<tr><td>{record['iteration']}</td><td><img src='{e(best['images'][best['best']])}' width=128></td>"
            f"<td><ol>{prompts}</ol>{feedback}</td></tr>"
        )
    figures = "".join(
        f"<tr><th>{e(k)}</th><td>{v:.3f}</td></tr>" if isinstance(v, float) else f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>"
        for k, v in summary.items() if not isinstance(v, (list, dict))
    )
    c = config["config"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>optimization run: {e(c['prompt'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}} td{{vertical-align:top;padding:4px}}
img{{image-rendering:pixelated;border:1px solid #ccc}} .f{{color:#555}} th{{text-align:left;padding-right:12px}}</style></head><body>
<h1>{e(c['prompt'])}</h1>
<p>user <b>{e(c['user'])}</b>, optimizer <b>{e(c['optimizer'])}</b>, context <b>{e(c['context'])}</b>,
{c['n_prompts']} prompts x {c['seeds']} seeds per iteration, {c['iterations']} iterations after iteration 0.</p>
{_curve(series)}
<table>{figures}</table>
<h2>Iterations</h2><table>{''.join(rows)}</table></body></html>"""
    path = Path(folder) / "report.html"
    path.write_text(page)
    return path
