"""The evaluation report on disk: ``report.json`` and PNG figures a person can read.

Every file is written beside its final name and renamed into place, so a
reader never sees half a file. Figures use matplotlib's Agg canvas (no
display, no pyplot state); each figure states the bar it shows and whether the
model met or missed it.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..exceptions import OutputExistsError

#: The files a report folder holds.
REPORT_JSON = "report.json"
FIGURES = (
    "label_efficiency.png",
    "confusion_subcompartments.png",
    "cell_types_radius.png",
    "confusion_cell_types.png",
    "ood_roc.png",
    "umap.png",
)
_METHOD_NAMES = {
    "segclr_linear": "SegCLR embeddings + linear head",
    "supervised_cnn": "same 3D CNN trained from scratch on the labels",
    "features_rf": "hand-crafted features + random forest",
}
_VERDICT_COLOURS = {"met": "#1a7f37", "missed": "#cf222e", "not measurable": "#9a6700"}


def check_output_dir(out_dir: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The report folder, refusing a file or (without ``force``) a non-empty folder.

    Raises
    ------
    OutputExistsError
        ``out_dir`` is a file, or a folder that holds something and ``force`` is False.
    """
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(
            f"{out} exists and is not empty; choose another folder or pass --force to overwrite"
        )
    return out


def write_report(
    report: dict[str, Any], out_dir: str | os.PathLike[str], *, force: bool = False
) -> list[Path]:
    """Write ``report.json`` and the figures into ``out_dir``; returns the paths written.

    ``out_dir`` is created if needed; a non-empty one is refused without ``force``
    (see :func:`check_output_dir`).
    """
    out = check_output_dir(out_dir, force=force)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    written = [write_atomic(out / REPORT_JSON, lambda f: f.write(text.encode()))]
    drawers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "label_efficiency.png": label_efficiency_figure,
        "confusion_subcompartments.png": subcompartment_confusion_figure,
        "cell_types_radius.png": cell_type_radius_figure,
        "confusion_cell_types.png": cell_type_confusion_figure,
        "ood_roc.png": ood_figure,
        "umap.png": umap_figure,
    }
    for name in FIGURES:
        figure = drawers[name](report)
        written.append(
            write_atomic(out / name, lambda f, fig=figure: fig.savefig(f, format="png", dpi=110))
        )
    return written


# ----------------------------------------------------------------------------- figures


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _bar_note(figure: Any, bar: dict[str, Any]) -> None:
    """The bar, the figure and the verdict, under the plots."""
    verdict = bar["verdict"]
    width = int(figure.get_figwidth() * 13)  # characters of 9-point text per line
    lines = [
        *textwrap.wrap(f"bar: {bar['what']} {bar['bar']}", width),
        *textwrap.wrap(f"this run: {bar['value']}  ->  {verdict.upper()}", width),
        *textwrap.wrap(f"({bar['context']})" if "context" in bar else "", width),
    ]
    figure.supxlabel("\n".join(lines), fontsize=9, color=_VERDICT_COLOURS[verdict])


def _find_bar(report: dict[str, Any], start: str) -> dict[str, Any]:
    return next(b for b in report["bars"] if b["what"].startswith(start))


def label_efficiency_figure(report: dict[str, Any]) -> Any:
    """Macro F1 against labelled views: median and range over draws, per method."""
    efficiency = report["label_efficiency"]
    figure = new_figure(7.5, 4.8)
    ax = figure.subplots()
    for name, curve in efficiency["methods"].items():
        x = np.asarray(curve["labels"])
        line = ax.plot(x, curve["median"], marker="o", label=_METHOD_NAMES.get(name, name))[0]
        ax.fill_between(x, curve["min"], curve["max"], color=line.get_color(), alpha=0.2)
    multiple = efficiency["label_multiple"]
    ax.axhline(multiple["supervised_best_f1"], color="grey", linestyle=":", linewidth=1)
    from matplotlib.ticker import NullLocator, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({n for c in efficiency["methods"].values() for n in c["labels"]}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("labelled views (class-balanced)")
    ax.set_ylabel("macro F1 on held-out seeds")
    classes = ", ".join(report["subcompartments"]["classes"])
    ax.set_title(f"Label efficiency: {classes} per view", fontsize=10)
    ax.legend(loc="best", fontsize=8, title="median; band: min-max over draws")
    ax.grid(alpha=0.3)
    _bar_note(figure, _find_bar(report, "label multiple"))
    return figure


def confusion_axes(ax: Any, matrix: list[list[int]], classes: list[str], title: str) -> None:
    counts = np.asarray(matrix, float)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        colour = "white" if share[i, j] > 0.6 else "black"
        ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)


def subcompartment_confusion_figure(report: dict[str, Any]) -> Any:
    """Confusion matrices (counts; colour: share of the true class) of the three methods."""
    summary = report["subcompartments"]
    methods = summary["methods"]
    figure = new_figure(4.0 * len(methods), 4.4)
    for ax, (name, scores) in zip(figure.subplots(1, len(methods)), methods.items(), strict=True):
        title = (
            f"{_METHOD_NAMES.get(name, name)}\n{scores['labels']} labels, "
            f"macro F1 {scores['macro_f1']}"
        )
        confusion_axes(ax, scores["confusion"], summary["classes"], title)
    _bar_note(figure, _find_bar(report, "subcompartment"))
    return figure


def cell_type_radius_figure(report: dict[str, Any]) -> Any:
    """Cell-type macro F1 per node and per segment against the aggregation radius."""
    cells = report["cell_types"]
    figure = new_figure(6.5, 4.5)
    ax = figure.subplots()
    radii = cells["radii_um"]
    ax.plot(radii, cells["per_node_macro_f1"], marker="o", label="per node")
    ax.plot(radii, cells["per_segment_macro_f1"], marker="s", label="per segment")
    ax.plot(
        radii,
        cells["features_rf_per_node_macro_f1"],
        marker="^",
        linestyle="--",
        label="per node: view features + random forest",
    )
    ax.axhline(0.85, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("aggregation radius R along the skeleton (µm)")
    ax.set_ylabel("macro F1 on held-out seeds")
    ax.set_title(
        f"Cell types ({len(cells['classes'])} classes, {cells['n_test_nodes']} test nodes, "
        f"{cells['n_test_segments']} segments)",
        fontsize=10,
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    _bar_note(figure, _find_bar(report, "cell-type"))
    return figure


def cell_type_confusion_figure(report: dict[str, Any]) -> Any:
    """Per-node cell-type confusion at R = 0 and at the best radius."""
    cells = report["cell_types"]
    best = cells["radii_um"].index(cells["best_radius_um"])
    shown = sorted({0, best})
    figure = new_figure(4.6 * len(shown), 4.8)
    axes = np.atleast_1d(figure.subplots(1, len(shown)))
    for ax, i in zip(axes, shown, strict=True):
        scores = cells["per_node"][i]
        title = f"R = {cells['radii_um'][i]:g} µm, per node: macro F1 {scores['macro_f1']}"
        confusion_axes(ax, scores["confusion"], cells["classes"], title)
    _bar_note(figure, _find_bar(report, "cell-type"))
    return figure


def ood_figure(report: dict[str, Any]) -> Any:
    """ROC curves of each head's uncertainty for telling neurons from the glia it knows."""
    ood = report["ood"]
    figure = new_figure(6.0, 5.0)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    styles = {"dempster_shafer": "-", "one_minus_confidence": "--", "variance": ":"}
    for colour, (kind, head) in enumerate(ood["heads"].items()):
        for score, curve in head["scores"].items():
            if curve["auroc"] is not None:
                ax.plot(
                    curve["fpr"],
                    curve["tpr"],
                    styles.get(score, "-."),
                    color=f"C{colour}",
                    label=f"{kind}: {score} ({curve['auroc']:.3f})",
                )
    ax.set_xlabel("false positive rate (glia called out of distribution)")
    ax.set_ylabel("true positive rate (neurons caught)")
    inside = " vs ".join(ood["in_distribution"]) or "—"
    ax.set_title(f"Out of distribution: heads trained on {inside}", fontsize=10)
    if ood["heads"]:
        ax.legend(loc="lower right", fontsize=7)
    else:
        ax.text(0.5, 0.5, ood.get("skipped", "no heads"), ha="center", va="center", wrap=True)
    ax.grid(alpha=0.3)
    _bar_note(figure, _find_bar(report, "OOD"))
    return figure


def umap_figure(report: dict[str, Any]) -> Any:
    """UMAP of test embeddings coloured by subcompartment and by cell type."""
    umap = report["umap"]
    panels = [("subcompartments", "views by subcompartment"), ("cell_types", "nodes by cell type")]
    figure = new_figure(11.0, 5.0)
    for ax, (key, title) in zip(figure.subplots(1, 2), panels, strict=True):
        points = umap[key]
        labels = np.asarray(points["labels"])
        for name in sorted(set(labels.tolist())):
            at = labels == name
            ax.scatter(np.asarray(points["x"])[at], np.asarray(points["y"])[at], s=6, label=name)
        ax.set_title(f"UMAP of test embeddings: {title} ({len(labels)})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if len(labels):
            ax.legend(fontsize=7, markerscale=2, loc="best")
    figure.supxlabel(
        f"n_neighbors {umap['n_neighbors']}, {umap['n_epochs']} epochs; embeddings of single "
        "views (no aggregation)",
        fontsize=9,
    )
    return figure
