"""The run's HTML report: the score curve, the best image of each iteration, every prompt."""

from __future__ import annotations

import html
from pathlib import Path

from ppo_client.plots import line_chart


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
{line_chart(series, x_label='iteration')}
<table>{figures}</table>
<h2>Iterations</h2><table>{''.join(rows)}</table></body></html>"""
    path = Path(folder) / "report.html"
    path.write_text(page)
    return path
