"""The run's HTML report: the score curve, the best image of each iteration, every prompt.

Every value on the page goes through ``_e``: clean text (``text.clean``), HTML-escaped, quotes
included. Prompts and feedback are clean when a run records them, but a run folder can be edited,
and names and numbers come from files too.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ppo_client.optimize.folder import CONFIG, SUMMARY, read_records
from ppo_client.optimize.records import IterationRecord, RenderedPrompt
from ppo_client.plots import line_chart
from ppo_client.text import clean


def _e(value: object) -> str:
    """Any value as text safe anywhere on the page, inside a quoted attribute included."""
    return html.escape(clean(str(value)), quote=True)


def write_report(folder: Path, config: dict, records: list[IterationRecord], summary: dict) -> Path:
    """``config`` is the run's configuration as ``config.json`` holds it (``RunConfig.to_dict``)."""
    series = {"best learned score so far": summary.get("best_so_far", [])}
    if "true_best_so_far" in summary:
        series["its true score (virtual user)"] = summary["true_best_so_far"]
    rows = []
    for record in records:
        best = record.best
        prompts = "".join(
            f"<li>{_e(p.prompt)} <b>{p.score:.2f}</b>"
            + (f" (true {p.true_score:.2f})" if p.true_score is not None else "")
            + (f" [{_e(p.proposer)}]" if p.proposer else "")
            + (f" <i>{_e(p.description)}</i>" if p.description else "")
            + "</li>"
            for p in sorted(record.prompts, key=lambda p: -p.score)
        )
        feedback = f"<p class=f>feedback: {_e(record.feedback)}</p>" if record.feedback else ""
        if record.screen:
            rho = record.calibration
            feedback += (f"<p class=f>screened: rendered {len(record.prompts)} of {_e(record.screen['candidates'])} candidates; "
                         f"rank correlation of predicted and measured scores "
                         f"{'n/a' if rho is None else format(rho, '.2f')}</p>")
        if record.preview:
            rho = record.preview.get("calibration")
            feedback += (f"<p class=f>previewed {len(record.preview['prompts'])} at {_e(record.preview['steps'])} steps; rank "
                         f"correlation of preview and full scores {'n/a' if rho is None else format(rho, '.2f')}</p>")
        if record.pool:
            feedback += "<p class=f>pool: " + ", ".join(
                f"{_e(name)} {v['share']:.0%} ({_e(v['candidates'])} made, {_e(v.get('rendered', 0))} rendered"
                + (f"; {_e(v['error'])}" if v.get("error") else "") + ")" for name, v in record.pool.items()) + "</p>"
        if record.cost:
            feedback += (f"<p class=f>cost: {_e(record.cost.get('total_unet', 0))} UNet evaluations "
                         f"({_e(record.cost.get('preview_unet', 0))} previews)</p>")
        rows.append(
            f"<tr><td>{_e(record.iteration)}</td><td><img src='{_e(best.best_image)}' width=128></td>"
            f"<td><ol>{prompts}</ol>{feedback}</td></tr>"
        )
    figures = "".join(
        f"<tr><th>{_e(k)}</th><td>{v:.3f}</td></tr>" if isinstance(v, float) else f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
        for k, v in summary.items() if not isinstance(v, (list, dict))
    )
    c = config
    comparison = _comparison(Path(folder))
    side_by_side = _side_by_side(records, summary)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>optimization run: {_e(c['prompt'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}} td{{vertical-align:top;padding:4px}}
img{{image-rendering:pixelated;border:1px solid #ccc}} .pair{{display:flex;gap:24px}} .pair figure{{margin:0;flex:1}}
.f{{color:#555}} th{{text-align:left;padding-right:12px}}</style></head><body>
<h1>{_e(c['prompt'])}</h1>
<p>user <b>{_e(c['user'])}</b>, optimizer <b>{_e(c['optimizer'])}</b>, context <b>{_e(c['context'])}</b>,
{_e(c['n_prompts'])} prompts x {_e(c['seeds'])} seeds per iteration, {_e(c['iterations'])} iterations after iteration 0.</p>
{side_by_side}
{line_chart(series, x_label='iteration')}
<table>{figures}</table>
{comparison}
<h2>Iterations</h2><table>{''.join(rows)}</table></body></html>"""
    path = Path(folder) / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _side_by_side(records: list[IterationRecord], summary: dict) -> str:
    """The user's prompt and the best one found, each with its best image, large enough to judge."""
    if not records or "best_prompt" not in summary:
        return ""
    initial = records[0].prompts[0]
    best = max((p for r in records for p in r.prompts), key=lambda p: p.score)

    def figure(title: str, p: RenderedPrompt) -> str:
        return (f"<figure><figcaption><b>{_e(title)}</b> ({p.score:.2f})<br>{_e(p.prompt)}</figcaption>"
                f"<img src='{_e(p.best_image)}' width=320 alt='{_e(title)}'></figure>")

    return f"<div class=pair>{figure('your prompt', initial)}{figure('best prompt', best)}</div>"


def _comparison(folder: Path) -> str:
    """The blind comparison's result, where a person has answered some of its pairs (``compare.json``)."""
    path = folder / "compare.json"
    if not path.exists():
        return ""
    result = json.loads(path.read_text(encoding="utf-8")).get("result") or {}
    if not result.get("answered"):
        return ""
    low, high = result["interval"]
    return (f"<h2>Blind comparison</h2><p>In {_e(result['answered'])} of {_e(result['total'])} pairs at fresh seeds, the best rewrite's "
            f"image was preferred {_e(result['optimized_preferred'])} times, the user's own {_e(result['initial_preferred'])} times, "
            f"{_e(result['same'])} judged the same: win rate <b>{result['win_rate']:.0%}</b> (95% interval {low:.0%}-{high:.0%}).</p>")


def refresh_report(folder: Path) -> Path:
    """Rewrite a run's report from what its folder holds."""
    folder = Path(folder)
    summary = json.loads((folder / SUMMARY).read_text(encoding="utf-8")) if (folder / SUMMARY).exists() else {}
    return write_report(folder, json.loads((folder / CONFIG).read_text(encoding="utf-8"))["config"], read_records(folder), summary)
