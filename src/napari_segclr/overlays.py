"""How predictions look in napari, as plain data (no napari import).

Colours per class, the colour of every predicted segment for a
``DirectLabelColormap``, node markers sized and faded by confidence, a
distinct style for what the head rejects as out of distribution, and the
segment table merged into a Labels layer's ``features``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

RGBA = tuple[float, float, float, float]

#: Fixed colours for the classes users meet most, so they look the same everywhere.
KNOWN_COLORS: dict[str, RGBA] = {
    "axon": (0.20, 0.55, 1.00, 1.0),
    "dendrite": (1.00, 0.45, 0.10, 1.0),
    "soma": (0.20, 0.85, 0.30, 1.0),
    "glia": (0.75, 0.35, 0.95, 1.0),
    "apical": (1.00, 0.85, 0.15, 1.0),
}
#: Colours for the other classes, in class-list order (Okabe–Ito, then tab10).
PALETTE: tuple[RGBA, ...] = (
    (0.90, 0.62, 0.00, 1.0),
    (0.34, 0.71, 0.91, 1.0),
    (0.00, 0.62, 0.45, 1.0),
    (0.94, 0.89, 0.26, 1.0),
    (0.00, 0.45, 0.70, 1.0),
    (0.84, 0.37, 0.00, 1.0),
    (0.80, 0.47, 0.65, 1.0),
    (0.55, 0.34, 0.29, 1.0),
    (0.09, 0.75, 0.81, 1.0),
    (0.74, 0.74, 0.13, 1.0),
)
#: Segments and nodes the head rejects as out of distribution: dark grey, outlined in white.
REJECTED_COLOR: RGBA = (0.30, 0.30, 0.30, 1.0)
REJECTED_BORDER: RGBA = (1.0, 1.0, 1.0, 1.0)
#: Segments without a prediction, while colouring by prediction: faint, so the others stand out.
UNPREDICTED_COLOR: RGBA = (0.6, 0.6, 0.6, 0.25)
#: Nodes without a prediction (no head yet).
UNPREDICTED_NODE: RGBA = (0.85, 0.85, 0.85, 0.8)
TRANSPARENT: RGBA = (0.0, 0.0, 0.0, 0.0)


def class_colors(classes: Sequence[str]) -> dict[str, RGBA]:
    """A colour per class: the fixed one for known names, else the next palette entry."""
    colors: dict[str, RGBA] = {}
    others = iter(PALETTE * (1 + len(classes) // len(PALETTE)))
    for name in classes:
        colors[name] = KNOWN_COLORS.get(name.lower()) or next(others)
    return colors


def fade(confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """Confidence rescaled to [0, 1]: 0 at chance (1/K), 1 at certainty; NaN → 0."""
    chance = 1.0 / max(n_classes, 1)
    scaled = (np.asarray(confidence, float) - chance) / max(1.0 - chance, 1e-9)
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)


def segment_color_dict(
    segment_ids: np.ndarray,
    predicted: np.ndarray,
    confidence: np.ndarray,
    rejected: np.ndarray,
    colors: dict[str, RGBA],
) -> dict[int | None, RGBA]:
    """Colours by segment id for napari's ``DirectLabelColormap(color_dict=...)``.

    Predicted segments get their class colour, more opaque the surer the
    head is; rejected ones :data:`REJECTED_COLOR`; the rest (key None)
    :data:`UNPREDICTED_COLOR`, and the background (0) none.
    """
    alpha = 0.35 + 0.65 * fade(confidence, len(colors))
    out: dict[int | None, RGBA] = {None: UNPREDICTED_COLOR, 0: TRANSPARENT}
    for sid, name, a, out_of_distribution in zip(
        segment_ids, predicted, alpha, rejected, strict=True
    ):
        if out_of_distribution:
            out[int(sid)] = REJECTED_COLOR
        elif name in colors:
            r, g, b, _ = colors[name]
            out[int(sid)] = (r, g, b, float(a))
    return out


def marker_style(
    predicted: np.ndarray,
    confidence: np.ndarray,
    rejected: np.ndarray,
    colors: dict[str, RGBA],
    *,
    size_nm: float,
) -> dict[str, np.ndarray]:
    """Per-node Points properties: face and border colours, border width, size, symbol.

    Faces take the predicted class colour, faded towards transparent and
    shrunk (down to half of ``size_nm``) as confidence falls to chance;
    rejected nodes are dark grey crosses outlined in white; nodes without a
    prediction are small light-grey discs.
    """
    n = len(predicted)
    strength = fade(confidence, len(colors))
    face = np.tile(np.asarray(UNPREDICTED_NODE), (n, 1))
    known = np.array([name in colors for name in predicted], bool)
    if known.any():
        face[known] = [colors[name] for name in np.asarray(predicted)[known]]
        face[known, 3] = 0.3 + 0.7 * strength[known]
    rejected = np.asarray(rejected, bool)
    face[rejected] = REJECTED_COLOR
    border = np.tile(np.asarray((0.0, 0.0, 0.0, 0.6)), (n, 1))
    border[rejected] = REJECTED_BORDER
    size = np.where(known, size_nm * (0.5 + 0.5 * strength), 0.4 * size_nm)
    symbol = np.where(rejected, "cross", "disc")
    width = np.where(rejected, 0.2, 0.05)
    return {
        "face_color": face,
        "border_color": border,
        "border_width": width,
        "size": size,
        "symbol": symbol,
    }


def merge_features(existing: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """A Labels layer's ``features`` with ``results`` (keyed by ``segment_id``) merged in.

    Rows are matched on the ``index`` column (the segment id); columns of
    ``results`` replace older ones of the same name, other columns stay, and
    segments new to the table are added.
    """
    fresh = results.rename(columns={"segment_id": "index"})
    fresh = fresh.astype({"index": np.uint64})
    if existing is None or len(existing.columns) == 0 or "index" not in existing:
        return fresh.reset_index(drop=True)
    kept = existing.drop(columns=[c for c in fresh.columns if c != "index" and c in existing])
    kept = kept.astype({"index": np.uint64})
    merged = kept.merge(fresh, on="index", how="outer", sort=True)
    return merged.reset_index(drop=True)


__all__ = [
    "KNOWN_COLORS",
    "PALETTE",
    "REJECTED_COLOR",
    "UNPREDICTED_COLOR",
    "class_colors",
    "fade",
    "marker_style",
    "merge_features",
    "segment_color_dict",
]
