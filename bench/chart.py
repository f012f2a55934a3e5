"""The chart of the README: releases/s of the seed's per-row upsert, its VALUES x100, ours and raw COPY at 0, 1
and 5 ms of round-trip latency, as a hand-written SVG (no plotting library to install for one bar chart).

``make bench`` draws it; ``.venv/bin/python bench/chart.py bench/results.json bench/throughput.svg`` redraws it
from a results file.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from engine_tables import PER_ROW, VALUES, find
from measure import LIMIT, Run

DELAYS_MS = (0.0, 1.0, 5.0)
COLOURS = ("#b8b8b8", "#7a9cc6", "#d9822b", "#3a7d44")
WIDTH, HEIGHT = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 66, 70


def series(sizes: dict[str, dict[str, Any]], worker: dict[str, Any] | None) -> dict[str, list[float | None]]:
    """Rates per strategy at each of DELAYS_MS: the seed's from the 4 KB table, ours and the limit's from the
    worker's runs (the same 4 KB releases), all through the proxy."""
    table: list[Run] = sizes.get("4 KB", {}).get("run_objects", [])
    runs: list[Run] = worker["run_objects"] if worker else []
    ours = f"worker [{worker['strategies'][0]}]" if worker else ""

    def rates(found: list[Run], strategy: str) -> list[float | None]:
        return [(run.rate if (run := find(found, strategy, delay)) else None) for delay in DELAYS_MS]

    return {"seed: one upsert + commit per release": rates(table, PER_ROW),
            "seed: multi-row VALUES ×100": rates(table, VALUES),
            "ours: the worker, SQS events to rows": rates(runs, ours),
            "raw COPY (the limit)": rates(runs, LIMIT)}


def svg(data: dict[str, list[float | None]], subtitle: str) -> str:
    top = max((value for values in data.values() for value in values if value), default=1.0)
    magnitude = 10 ** (len(str(int(top))) - 1)
    step = next(magnitude * factor for factor in (0.2, 0.5, 1, 2) if top / (magnitude * factor) <= 8)
    ticks = int(top // step) + 1
    scale_top = step * ticks
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / len(DELAYS_MS)
    bar_w = group_w * 0.8 / len(data)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{LEFT}" y="20" font-size="15" font-weight="bold">Releases per second into PostgreSQL '
             f'(~4 KB OCDS releases)</text>',
             *(f'<text x="{LEFT}" y="{36 + 14 * number}" fill="#555" font-size="11">{escape(line)}</text>'
               for number, line in enumerate(subtitle.split("\n")))]
    for tick in range(ticks + 1):
        value = step * tick
        y = TOP + plot_h - plot_h * tick / ticks
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    for group, delay in enumerate(DELAYS_MS):
        x0 = LEFT + group * group_w + group_w * 0.1
        for index, (name, values) in enumerate(data.items()):
            value = values[group]
            x = x0 + index * bar_w
            if value is None:
                continue
            height = plot_h * value / scale_top
            y = TOP + plot_h - height
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{height:.1f}" '
                         f'fill="{COLOURS[index]}"><title>{escape(name)}: {value:,.0f}/s</title></rect>')
            parts.append(f'<text x="{x + (bar_w - 2) / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                         f'font-size="10">{value:,.0f}</text>')
        parts.append(f'<text x="{LEFT + (group + 0.5) * group_w:.1f}" y="{TOP + plot_h + 18}" '
                     f'text-anchor="middle" font-weight="bold">{delay:g} ms RTT</text>')
    for index, name in enumerate(data):
        x = LEFT + (index % 2) * plot_w / 2
        y = HEIGHT - 30 + (index // 2) * 16
        parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{COLOURS[index]}"/>')
        parts.append(f'<text x="{x + 18}" y="{y}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write(path: Path, sizes: dict[str, dict[str, Any]], worker: dict[str, Any] | None, subtitle: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(svg(series(sizes, worker), subtitle))
    return path


def main(argv: list[str]) -> int:
    """Redraw the chart from a results.json written by bench/run.py."""
    import json
    from dataclasses import fields

    results = json.loads(Path(argv[0]).read_text())
    names = {item.name for item in fields(Run)}

    def objects(section: dict[str, Any]) -> dict[str, Any]:
        return {**section, "run_objects": [Run(**{key: value for key, value in run.items() if key in names})
                                           for run in section["runs"]]}

    sizes = {label: objects(info) for label, info in results.get("sizes", {}).items()}
    worker = objects(results["worker"]) if "worker" in results else None
    write(Path(argv[1]), sizes, worker, results.get("chart_subtitle", ""))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
