"""Results of a morphology evaluation on disk and on screen: JSON, per-cell CSV, figure, table.

Files are written beside their final name and renamed into place (as the
evaluation report's are), and a folder holding something is not written into
unless asked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from .morphology import MorphologyReport
from .report import check_output_dir, confusion_axes, new_figure

RESULT_FILES = ("results.json", "cells.csv", "results.png")


def write_report(
    report: MorphologyReport, folder: str | os.PathLike[str], *, force: bool = False
) -> list[Path]:
    """Write ``results.json``, ``cells.csv`` and ``results.png`` into ``folder``.

    Raises
    ------
    OutputExistsError
        ``folder`` is a file, or holds something and ``force`` is False.
    """
    folder = check_output_dir(folder, force=force)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.summary, indent=2, ensure_ascii=False) + "\n"
    table = report.cells.to_csv(index=False)
    figure = plot_report(report.summary)
    json_path, csv_path, png_path = (folder / name for name in RESULT_FILES)
    return [
        write_atomic(json_path, lambda f: f.write(text.encode())),
        write_atomic(csv_path, lambda f: f.write(table.encode())),
        write_atomic(png_path, lambda f: figure.savefig(f, format="png", dpi=110)),
    ]


def plot_report(summary: Mapping[str, Any]) -> Any:
    """A figure: macro F1 against R beside the baseline, compartment F1, confusion matrices."""
    cell_types = summary["cell_types"]
    figure = new_figure(12, 9.5)
    axes = figure.subplots(2, 2)
    figure.suptitle(
        f"{summary['label']}: {len(summary['classes'])} classes, "
        f"{summary['cells']['test']} test cells ({summary['mode']})"
    )
    _plot_f1(axes[0, 0], cell_types)
    _plot_compartments(axes[0, 1], summary.get("compartments"))
    confusion = cell_types["confusion"]
    classes = confusion["classes"]
    best = cell_types["best_radius_um"]
    confusion_axes(axes[1, 0], confusion["segclr"], classes, f"SegCLR, R = {best:g} µm")
    confusion_axes(axes[1, 1], confusion["baseline"], classes, "morphometrics + random forest")
    return figure


def _plot_f1(ax: Any, cell_types: Mapping[str, Any]) -> None:
    entries = cell_types["by_radius"]
    radii = [e["radius_um"] for e in entries]
    for key, style, name in (("macro_f1", "o-", "macro F1"), ("accuracy", "s--", "accuracy")):
        values = [e[key] for e in entries]
        spread = [np.std(e[f"fold_{key}"]) if len(e[f"fold_{key}"]) > 1 else 0 for e in entries]
        ax.errorbar(radii, values, yerr=spread, fmt=style, capsize=3, label=f"SegCLR {name}")
        base = cell_types["baseline"][key]
        ax.axhline(
            base,
            color="grey",
            linestyle="-" if key == "macro_f1" else "--",
            label=f"morphometrics {name} ({base:.2f})",
        )
    ax.set(
        xlabel="averaging radius R (µm, along the skeleton)",
        ylabel="score over test cells",
        ylim=(0, 1.02),
        title="cell types",
    )
    ax.legend(fontsize=8, loc="lower right")


def _plot_compartments(ax: Any, compartments: Mapping[str, Any] | None) -> None:
    groups = (compartments or {}).get("groups", {})
    plotted = False
    for group, entry in groups.items():
        scores = entry["by_radius"]
        if scores:
            ax.plot(
                [s["radius_um"] for s in scores],
                [s["macro_f1"] for s in scores],
                "o-",
                label=f"{group} ({entry['cells']} cells)",
            )
            plotted = True
    ax.set(
        xlabel="averaging radius R (µm)",
        ylabel="macro F1 over nodes",
        ylim=(0, 1.02),
        title="node compartments (axon / dendrite / apical)",
    )
    if plotted:
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "not scored", ha="center", va="center", transform=ax.transAxes)


def format_summary(summary: Mapping[str, Any]) -> str:
    """The cell-type and compartment scores as a plain-text table."""
    cell_types = summary["cell_types"]
    base = cell_types["baseline"]
    lines = [
        f"{summary['label']} ({len(summary['classes'])} classes, "
        f"{summary['cells']['test']} test cells; {summary['mode']})",
        f"{'R (µm)':>8} {'macro F1':>9} {'accuracy':>9} {'site acc.':>10}  >= baseline",
    ]
    for entry in cell_types["by_radius"]:
        at_least = cell_types["segclr_at_least_baseline"][f"{entry['radius_um']:g}"]
        lines.append(
            f"{entry['radius_um']:>8g} {entry['macro_f1']:>9.3f} {entry['accuracy']:>9.3f} "
            f"{entry['site_accuracy']:>10.3f}  {'yes' if at_least else 'no'}"
        )
    lines.append(
        f"{'forest':>8} {base['macro_f1']:>9.3f} {base['accuracy']:>9.3f} {'':>10}  "
        "(morphometrics + random forest)"
    )
    for group, entry in ((summary.get("compartments") or {}).get("groups") or {}).items():
        scores = ", ".join(f"R {s['radius_um']:g}: {s['macro_f1']:.3f}" for s in entry["by_radius"])
        lines.append(
            f"compartments, {group} ({entry['cells']} cells): macro F1 {scores or entry['note']}"
        )
    return "\n".join(lines)
