"""Layer choices shared by the dock widgets.

The plugin adds overlay layers of its own (node markers, the UMAP selection);
they are never offered as the EM or the segmentation to work on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NODES_LAYER = "SegCLR nodes"
SELECTION_LAYER = "SegCLR selection"
OVERLAY_LAYERS = (NODES_LAYER, SELECTION_LAYER)


def layer_choices(viewer: Any, kind: type) -> Callable[[Any], list[str]]:
    """A magicgui ``choices`` callable: names of layers of ``kind``, overlays left out."""

    def names(_: Any = None) -> list[str]:
        return [
            layer.name
            for layer in viewer.layers
            if isinstance(layer, kind) and layer.name not in OVERLAY_LAYERS
        ]

    return names
