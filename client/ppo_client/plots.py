"""Small inline SVG charts for reports and benchmark results."""

from __future__ import annotations

import html

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


def line_chart(
    series: dict[str, list[float]], *, x_label: str, x_values: list | None = None, width: int = 560, height: int = 220,
    spread: dict[str, tuple[list[float], list[float]]] | None = None,
) -> str:
    """An inline SVG line chart (no plotting library needed); x positions are evenly spaced.
    ``spread`` gives a series a shaded band (low, high) around its line."""
    spread = spread or {}
    values = [v for s in series.values() for v in s] + [v for lo, hi in spread.values() for v in (*lo, *hi)]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    count = max(len(s) for s in series.values())
    colours = COLOURS

    def point(i, v):
        x = 40 + (width - 60) * (i / max(count - 1, 1))
        y = height - 30 - (height - 50) * ((v - low) / span)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" font-size="11">']
    parts.append(f'<line x1="40" y1="{height - 30}" x2="{width - 20}" y2="{height - 30}" stroke="#888"/>')
    parts.append(f'<text x="5" y="{height - 30}">{low:.2f}</text><text x="5" y="25">{high:.2f}</text>')
    parts.append(f'<text x="{width / 2 - 20:.0f}" y="{height - 8}">{html.escape(x_label)}</text>')
    for i, x in enumerate(x_values or []):
        parts.append(f'<text x="{point(i, low).split(",")[0]}" y="{height - 18}">{html.escape(str(x))}</text>')
    for n, (label, data) in enumerate(series.items()):
        colour = colours[n % len(colours)]
        if label in spread:
            lo, hi = spread[label]
            outline = [point(i, v) for i, v in enumerate(hi)] + [point(i, v) for i, v in reversed(list(enumerate(lo)))]
            parts.append(f'<polygon fill="{colour}" fill-opacity="0.12" stroke="none" points="{" ".join(outline)}"/>')
        points = " ".join(point(i, v) for i, v in enumerate(data))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{width - 200}" y="{20 + 14 * n}" fill="{colour}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
