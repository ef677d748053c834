"""Bar charts as geometry for server-rendered SVG (no script, no CDN): the
pages draw each bar as a `<rect>` with its label and value, and give the same
numbers as a table beside it."""
from __future__ import annotations

from collections.abc import Iterable


def bars(items: Iterable[tuple[str, int | float, str]], *, width: int = 420, bar: int = 18, gap: int = 6,
         label_width: int = 120, value_width: int = 48) -> dict:
    """Horizontal bars, one per (label, value, css class), scaled to the
    largest value: {"width", "height", "bars": [{label, value, cls, y, w}],
    "x0"} for the template."""
    rows = [(str(label), value or 0, cls) for label, value, cls in items]
    top = max((v for _, v, _ in rows), default=0) or 1
    span = width - label_width - value_width
    out = []
    for i, (label, value, cls) in enumerate(rows):
        out.append({"label": label, "value": value, "cls": cls, "y": i * (bar + gap),
                    "w": round(value / top * span, 1), "text_y": i * (bar + gap) + bar * 0.72})
    return {"width": width, "height": max(len(rows) * (bar + gap) - gap, bar), "bar": bar, "x0": label_width,
            "value_x": label_width + 4, "bars": out, "empty": not rows}
