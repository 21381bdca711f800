"""UMAP view: selection → highlight latency and redraw time at 10⁴–10⁶ points; UMAP transform time.

Prints one JSON document, then the same figures as a table. Run from the
repository root, under Xvfb where there is no display:

    xvfb-run -a python benchmarks/bench_umap_view.py
    xvfb-run -a python benchmarks/bench_umap_view.py --points 10000 100000 --repeats 3

Per point count N, on a synthetic map (N points in 40 clusters, 20 points per
segment, random colours) drawn by the UMAP view's own vispy canvas
(:class:`~napari_segclr.widgets.umap_view.MapCanvas`, a ``Markers`` visual in
a shown Qt widget of ``--size`` px):

- ``index_s``: binning the points for selection (once per map, in the worker);
- ``upload_s``: handing every point and colour to the canvas (once per recolour);
- ``redraw_s``: one full redraw, ``canvas.render()`` (draw + read the frame back);
- ``lasso_small_s`` / ``lasso_large_s``: what a lasso costs, from its polygon (a
  64-vertex star over about 2 % / 40 % of the points) to the segment ids, their
  points and the highlight upload, as the widget runs it
  (``in_polygon`` → ``segments_of`` → ``rows_of`` → ``show_highlighted``);
- ``viewer_pick_s``: a segment selected in the viewer → its points highlighted;
- ``labels_overlay_s``: the selected ids (of the large lasso) set as a napari
  ``DirectLabelColormap`` on a Labels layer (the highlight in the viewer);
- ``matplotlib_redraw_s`` / ``matplotlib_highlight_s``: for comparison, the same
  scatter in matplotlib (Agg), drawn, and recoloured for the large lasso and
  drawn again, as plots built on matplotlib do on every selection.

UMAP: a map is fitted with the view's settings (umap-learn, seeded,
``n_epochs`` 100) to ``--fit-points`` 64-d embeddings in clusters, after a
small warm-up fit that pays numba's compilation; then ``--new-points`` new
embeddings are placed with the fitted model's ``transform`` (``place``; the
first ``transform`` compiles too, so it runs twice and both are reported).

Figures are medians over ``--repeats``. Rendering is whatever OpenGL the
display offers: under Xvfb that is Mesa's llvmpipe on the CPU, far slower than
any GPU. The cores may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

SEGMENT_NODES = 20
CLUSTERS = 40


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--points", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="map sizes"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure")
    parser.add_argument("--size", type=int, nargs=2, default=(500, 500), metavar=("W", "H"))
    parser.add_argument("--fit-points", type=int, default=10_000, help="embeddings fitted")
    parser.add_argument("--new-points", type=int, default=1_000, help="embeddings placed")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension")
    parser.add_argument(
        "--no-matplotlib",
        dest="matplotlib",
        action="store_false",
        help="skip the matplotlib (Agg) scatter drawn for comparison",
    )
    return parser.parse_args(argv)


def timed(func: Callable[[], Any], repeats: int, *, warm: bool = True) -> tuple[float, Any]:
    """The median wall time of ``func`` over ``repeats`` runs (after one untimed), its result."""
    times, result = [], func() if warm else None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def synthetic_map(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment ids, 2D positions in clusters (as a UMAP draws them) and random colours."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (CLUSTERS, 2))
    cluster = rng.integers(0, CLUSTERS, n // SEGMENT_NODES + 1)
    segment_cluster = np.repeat(cluster, SEGMENT_NODES)[:n]
    xy = centres[segment_cluster] + rng.normal(scale=0.8, size=(n, 2))
    ids = np.repeat(np.arange(1, len(cluster) + 1, dtype=np.uint64), SEGMENT_NODES)[:n]
    colors = rng.uniform(0.2, 1.0, (n, 4)).astype(np.float32)
    colors[:, 3] = 0.8
    return ids * np.uint64(1_000_003), xy.astype(np.float32), colors


def star(xy: np.ndarray, fraction: float) -> np.ndarray:
    """A 64-vertex star around the middle of the map holding about ``fraction`` of the points."""
    centre = np.median(xy, axis=0)
    distance = np.linalg.norm(xy - centre, axis=1)
    radius = float(np.quantile(distance, fraction)) * 1.05
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = radius * np.where(np.arange(64) % 2 == 0, 1.0, 0.85)
    return centre + np.c_[r * np.cos(theta), r * np.sin(theta)]


def bench_points(n: int, args: argparse.Namespace, plot: Any, qt_app: Any) -> dict[str, Any]:
    from napari.layers import Labels
    from napari.utils.colormaps import DirectLabelColormap

    from napari_segclr.embedding_map import MapPoints
    from napari_segclr.widgets.umap_view import HIGHLIGHT, point_size

    ids, xy, colors = synthetic_map(n, seed=n)
    size = point_size(n)
    out: dict[str, Any] = {"points": n, "segments": len(np.unique(ids)), "marker_px": size}

    def build() -> MapPoints:
        points = MapPoints(ids, np.arange(n), xy)
        points.build_indexes()
        return points

    out["index_s"], points = timed(build, 1, warm=False)
    out["upload_s"], _ = timed(lambda: plot.show_points(xy, colors, size), 1, warm=False)
    plot.show_highlighted(np.zeros((0, 2)), np.zeros((0, 4)), size)
    plot.fit_view(xy)
    qt_app.process_events()
    out["redraw_s"], image = timed(plot.render, args.repeats)  # untimed first: shaders compile
    out["image_px"] = list(image.shape[:2])

    def highlight(selected: np.ndarray) -> np.ndarray:
        rows = points.rows_of(selected)
        plot.show_highlighted(xy[rows], colors[rows], size)
        return rows

    for name, fraction in (("small", 0.02), ("large", 0.4)):
        polygon = star(xy, fraction)
        select_s, selected = timed(
            lambda p=polygon: points.segments_of(points.in_polygon(p)), args.repeats
        )
        highlight_s, rows = timed(lambda s=selected: highlight(s), args.repeats)
        out[f"lasso_{name}_select_s"] = select_s
        out[f"lasso_{name}_highlight_s"] = highlight_s
        out[f"lasso_{name}_s"] = select_s + highlight_s
        out[f"lasso_{name}_points"] = len(rows)
        out[f"lasso_{name}_segments"] = len(selected)
    out["redraw_highlighted_s"], _ = timed(plot.render, args.repeats)

    one = ids[n // 2]
    out["viewer_pick_s"], _ = timed(
        lambda: plot.show_highlighted(xy[points.rows_of([one])], colors[:SEGMENT_NODES], size),
        args.repeats,
    )

    layer = Labels(np.zeros((16, 16, 16), np.uint64))

    def overlay() -> None:
        color_dict = {None: (0.0, 0.0, 0.0, 0.0), 0: (0.0, 0.0, 0.0, 0.0)}
        color_dict.update(dict.fromkeys(selected.tolist(), HIGHLIGHT))
        layer.colormap = DirectLabelColormap(color_dict=color_dict)

    out["labels_overlay_s"], _ = timed(overlay, args.repeats)
    if args.matplotlib:
        out.update(bench_matplotlib(xy, colors, rows, size, args))
    return out


def bench_matplotlib(
    xy: np.ndarray, colors: np.ndarray, rows: np.ndarray, size: float, args: argparse.Namespace
) -> dict[str, float]:
    """For comparison: the same scatter drawn by matplotlib (Agg), as plots built on it redraw.

    ``matplotlib_redraw_s`` draws the figure; ``matplotlib_highlight_s`` recolours the
    large lasso's points and draws again (a matplotlib plot redraws everything).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(args.size[0] / dpi, args.size[1] / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    scatter = axes.scatter(xy[:, 0], xy[:, 1], c=colors, s=size**2, linewidths=0)
    redraw_s, _ = timed(canvas.draw, args.repeats)
    highlighted = colors.copy()
    highlighted[rows] = (1.0, 0.95, 0.2, 1.0)

    def highlight() -> None:
        scatter.set_facecolor(highlighted)
        canvas.draw()

    highlight_s, _ = timed(highlight, args.repeats)
    return {"matplotlib_redraw_s": redraw_s, "matplotlib_highlight_s": highlight_s}


def bench_umap(args: argparse.Namespace) -> dict[str, Any]:
    from napari_segclr.embedding_map import UmapSettings, fit_map

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(12, args.dim))

    def embeddings(n: int) -> np.ndarray:
        return (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, args.dim))).astype(np.float32)

    def keys(n: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(start, start + n)
        return (rows // SEGMENT_NODES + 1).astype(np.uint64), rows % SEGMENT_NODES

    settings = UmapSettings()
    start = time.perf_counter()
    fit_map(*keys(200, 0), embeddings(200), settings=settings)  # numba compiles here
    warm_up = time.perf_counter() - start
    n, m = args.fit_points, args.new_points
    segment_id, node_id = keys(n, 0)
    start = time.perf_counter()
    umap_map = fit_map(segment_id, node_id, embeddings(n), settings=settings)
    fit_s = time.perf_counter() - start
    transforms = []
    for trial in range(2):  # the first also compiles the search of the fitted index
        new_id, new_node = keys(m, n + trial * m)
        start = time.perf_counter()
        placed = umap_map.place(
            np.r_[segment_id, new_id],
            np.r_[node_id, new_node],
            np.r_[np.zeros((n, args.dim), np.float32), embeddings(m)],
        )
        transforms.append(time.perf_counter() - start)
        assert placed.n_placed == m and placed.n_fitted == n
    return {
        "settings": {"n_neighbors": settings.n_neighbors, "n_epochs": settings.n_epochs},
        "fit_points": n,
        "warm_up_fit_s": warm_up,
        "fit_s": fit_s,
        "new_points": m,
        "transform_first_s": transforms[0],
        "transform_s": transforms[1],
    }


def table(report: dict[str, Any]) -> str:
    rows = [
        ("points", "points", "{:,}"),
        ("segments", "segments", "{:,}"),
        ("index_s", "selection index", "{:.3f} s"),
        ("upload_s", "upload all points", "{:.3f} s"),
        ("redraw_s", "redraw", "{:.3f} s"),
        ("lasso_small_s", "lasso 2 % → ids → highlight", "{:.4f} s"),
        ("lasso_small_select_s", "  of which polygon → segment ids", "{:.4f} s"),
        ("lasso_small_points", "  points selected", "{:,}"),
        ("lasso_large_s", "lasso 40 % → ids → highlight", "{:.4f} s"),
        ("lasso_large_select_s", "  of which polygon → segment ids", "{:.4f} s"),
        ("lasso_large_points", "  points selected", "{:,}"),
        ("redraw_highlighted_s", "redraw with highlight", "{:.3f} s"),
        ("viewer_pick_s", "viewer pick → highlight", "{:.4f} s"),
        ("labels_overlay_s", "Labels colormap (large lasso)", "{:.4f} s"),
        ("matplotlib_redraw_s", "matplotlib Agg: redraw", "{:.3f} s"),
        ("matplotlib_highlight_s", "matplotlib Agg: recolour + redraw", "{:.3f} s"),
    ]
    sizes = report["sizes"]
    lines = ["| figure | " + " | ".join(f"{s['points']:,}" for s in sizes) + " |"]
    lines.append("|---" * (len(sizes) + 1) + "|")
    for key, name, fmt in rows[2:]:
        if key in sizes[0]:
            lines.append(f"| {name} | " + " | ".join(fmt.format(s[key]) for s in sizes) + " |")
    u = report["umap"]
    lines.append("")
    lines.append(
        f"UMAP (n_epochs {u['settings']['n_epochs']}): fit {u['fit_points']:,} points "
        f"{u['fit_s']:.1f} s (numba warm-up {u['warm_up_fit_s']:.1f} s); transform "
        f"{u['new_points']:,} new points {u['transform_s']:.2f} s "
        f"(first, compiling: {u['transform_first_s']:.2f} s)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and table, and return the report."""
    args = parse_args(argv)
    from vispy import app as vispy_app
    from vispy import gloo

    from napari_segclr.widgets.umap_view import MapCanvas

    qt_app = vispy_app.use_app()
    qt_app.create()
    plot = MapCanvas(on_polygon=lambda *_: None, on_click=lambda *_: None)
    plot.native.resize(*args.size)
    plot.native.show()
    qt_app.process_events()
    report: dict[str, Any] = {
        "benchmark": "umap_view",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min_start": round(os.getloadavg()[0], 2),
        "canvas_px": list(args.size),
        "repeats": args.repeats,
    }
    plot.canvas.set_current()
    report["opengl"] = gloo.gl.glGetParameter(gloo.gl.GL_RENDERER)
    report["sizes"] = [bench_points(n, args, plot, qt_app) for n in args.points]
    plot.canvas.close()
    report["umap"] = bench_umap(args)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    print(table(report))
    return report


if __name__ == "__main__":
    main()
