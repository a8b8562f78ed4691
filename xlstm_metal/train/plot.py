"""Loss curves and bar charts as SVG images, with no plotting dependency."""
from __future__ import annotations

from pathlib import Path


def svg_page(width: int, height: int, title: str, body: list[str]) -> str:
    """An SVG document: white background, ``title`` centred on top, then the ``body`` elements."""
    return "\n".join([f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                      f'font-family="sans-serif" font-size="12">',
                      f'<rect width="{width}" height="{height}" fill="white"/>',
                      f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
                      *body, "</svg>"])


def loss_curve_svg(steps: list[int], losses: list[float], path: Path, title: str = "training loss",
                   val: list[tuple[int, float]] | None = None, width: int = 640, height: int = 360) -> None:
    if not steps:
        return
    pad = 48
    lo, hi = min(losses + [v for _, v in (val or [])]), max(losses + [v for _, v in (val or [])])
    hi = hi if hi > lo else lo + 1
    x0, x1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
    sx = lambda s: pad + (s - x0) / (x1 - x0) * (width - 2 * pad)  # noqa: E731
    sy = lambda v: height - pad - (v - lo) / (hi - lo) * (height - 2 * pad)  # noqa: E731
    pts = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in zip(steps, losses))
    parts = [f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{pad}" y="{height - pad + 16}">{x0}</text>',
             f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">{x1} steps</text>',
             f'<text x="{pad - 4}" y="{sy(hi) + 4}" text-anchor="end">{hi:.2f}</text>',
             f'<text x="{pad - 4}" y="{sy(lo) + 4}" text-anchor="end">{lo:.2f}</text>',
             f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>']
    if val:
        vpts = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in val)
        parts.append(f'<polyline fill="none" stroke="#d62728" stroke-width="2" points="{vpts}"/>')
        parts.append(f'<text x="{width - pad}" y="{pad}" text-anchor="end" fill="#d62728">validation</text>')
    Path(path).write_text(svg_page(width, height, title, parts))
