"""How predictions look: class colours, confidence fading, out-of-distribution style, features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_segclr.overlays import (
    KNOWN_COLORS,
    REJECTED_COLOR,
    UNPREDICTED_COLOR,
    class_colors,
    fade,
    marker_style,
    merge_features,
    segment_color_dict,
)


def test_known_classes_keep_their_colours_and_others_differ():
    colors = class_colors(["Axon", "basket", "dendrite", "bipolar"])
    assert colors["Axon"] == KNOWN_COLORS["axon"] and colors["dendrite"] == KNOWN_COLORS["dendrite"]
    assert len(set(colors.values())) == 4
    many = class_colors([f"type {i}" for i in range(25)])
    assert len(many) == 25


def test_confidence_fades_from_chance_to_certainty():
    np.testing.assert_allclose(fade(np.array([0.25, 0.625, 1.0, np.nan]), 4), [0, 0.5, 1, 0])
    assert fade(np.array([0.1]), 4)[0] == 0  # below chance is clipped


def test_segments_are_coloured_by_class_faded_by_confidence_and_rejects_stand_out():
    colors = class_colors(["axon", "dendrite"])
    ids = np.array([2**63 + 5, 7, 9], np.uint64)
    out = segment_color_dict(
        ids,
        np.array(["axon", "dendrite", "axon"]),
        np.array([1.0, 0.6, 0.99]),
        np.array([False, False, True]),
        colors,
    )
    assert out[None] == UNPREDICTED_COLOR and out[0][3] == 0
    assert out[2**63 + 5] == KNOWN_COLORS["axon"]  # huge ids stay exact
    assert out[7][:3] == KNOWN_COLORS["dendrite"][:3] and 0.35 < out[7][3] < 1
    assert out[9] == REJECTED_COLOR


def test_node_markers_shrink_and_fade_with_doubt_and_rejects_are_crosses():
    colors = class_colors(["axon", "dendrite"])
    style = marker_style(
        np.array(["axon", "axon", "dendrite", ""], dtype=object),
        np.array([1.0, 0.5, 0.9, np.nan]),
        np.array([False, False, True, False]),
        colors,
        size_nm=600,
    )
    size, face = style["size"], style["face_color"]
    assert size[0] == 600 and size[1] == 300 and size[3] < size[1]
    assert face[0, 3] > face[1, 3] and tuple(face[2]) == REJECTED_COLOR
    assert style["symbol"].tolist() == ["disc", "disc", "cross", "disc"]
    assert style["border_width"][2] > style["border_width"][0]
    assert face.shape == style["border_color"].shape == (4, 4)


def test_features_merge_keeps_other_columns_and_adds_new_segments():
    existing = pd.DataFrame({"index": [1, 2, 3], "cell_type": ["a", "b", "c"], "old": [0, 0, 0]})
    results = pd.DataFrame(
        {"segment_id": np.array([2, 2**64 - 1], np.uint64), "old": [5, 6], "new": [0.5, 0.9]}
    )
    merged = merge_features(existing, results)
    assert merged["index"].tolist() == [1, 2, 3, 2**64 - 1]
    assert merged["cell_type"].tolist()[:3] == ["a", "b", "c"]
    assert merged.set_index("index").loc[2, "old"] == 5 and np.isnan(merged["new"].iloc[0])
    fresh = merge_features(pd.DataFrame(), results)
    assert fresh.columns.tolist() == ["index", "old", "new"] and len(fresh) == 2
