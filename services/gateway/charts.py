"""A small inline SVG line chart of a child's position over time: lower is
better, so the y axis is drawn with 1 at the top."""
from __future__ import annotations

from datetime import datetime


def position_chart(history: list[dict], width: int = 280, height: int = 90, pad: int = 14) -> dict | None:
    """Geometry for the template: polyline points, dots and axis labels.
    None when there is nothing to draw."""
    pts = []
    for h in history:
        try:
            pts.append((datetime.fromisoformat(str(h["at"]).replace("Z", "+00:00")), int(h["position"])))
        except (KeyError, TypeError, ValueError):
            continue
    if not pts:
        return None
    pts.sort()
    t0, t1 = pts[0][0].timestamp(), pts[-1][0].timestamp()
    worst = max(p for _, p in pts)
    best = min(p for _, p in pts)
    span_t = (t1 - t0) or 1.0
    span_p = (worst - best) or 1
    dots = []
    for t, p in pts:
        x = pad + (t.timestamp() - t0) / span_t * (width - 2 * pad) if len(pts) > 1 else width / 2
        y = pad + (p - best) / span_p * (height - 2 * pad) if worst != best else height / 2
        dots.append({"x": round(x, 1), "y": round(y, 1), "position": p, "at": t.date().isoformat()})
    return {
        "width": width, "height": height, "dots": dots,
        "points": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "best": best, "worst": worst, "first": pts[0][0].date().isoformat(), "last": pts[-1][0].date().isoformat(),
    }
