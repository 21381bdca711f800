"""The baselines: hand-crafted view features and the supervised CNN trained from scratch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segclr.evaluate import (
    VIEW_FEATURES,
    LabelledViews,
    SupervisedSettings,
    train_supervised_cnn,
    view_features,
)
from napari_segclr.model import get_preset

N = 33  # voxels per view side
VOXEL_NM = 100.0


def _views(masks: list[np.ndarray], labels: list[str]) -> LabelledViews:
    mask = np.stack(masks)
    em = np.where(mask, 200, 50).astype(np.uint8)
    return LabelledViews(em, mask, np.array(labels), np.full(len(masks), 1000), (VOXEL_NM,) * 3)


def _grid() -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(N) - N // 2] * 3, indexing="ij"))


def _ball(radius: float) -> np.ndarray:
    return (_grid() ** 2).sum(0) <= radius**2


def _tube(radius: float, *, y: int = 0) -> np.ndarray:
    z, yy, _ = _grid()
    return z**2 + (yy - y) ** 2 <= radius**2  # along x, through the whole view


def test_features_tell_a_soma_like_ball_from_an_axon_like_tube():
    views = _views([_ball(8), _tube(2), _tube(2, y=-8) | _tube(2, y=8)], ["ball", "tube", "two"])
    features = dict(zip(VIEW_FEATURES, view_features(views, batch_size=2).T, strict=True))
    assert view_features(views).shape == (3, len(VIEW_FEATURES))
    ball, tube, two = (np.array([f[i] for f in features.values()]) for i in range(3))
    at = {name: i for i, name in enumerate(VIEW_FEATURES)}
    voxel_um3 = (VOXEL_NM / 1000) ** 3
    assert ball[at["mask_volume_um3"]] == pytest.approx(_ball(8).sum() * voxel_um3)
    assert ball[at["radius_centre_um"]] == pytest.approx(0.85, abs=0.1)
    assert tube[at["radius_centre_um"]] == pytest.approx(0.25, abs=0.1)
    assert two[at["radius_centre_um"]] == 0  # nothing of the segment at the centre
    assert tube[at["extent_major_um"]] > 2 * ball[at["extent_major_um"]]
    assert tube[at["surface_per_volume_per_um"]] > ball[at["surface_per_volume_per_um"]]
    assert (ball[at["pieces"]], tube[at["pieces"]], two[at["pieces"]]) == (1, 1, 2)
    for view in (ball, tube, two):
        assert view[at["em_mean_inside"]] == pytest.approx(200 / 255)
        assert view[at["em_mean_outside"]] == pytest.approx(50 / 255)
        assert view[at["em_std_inside"]] == pytest.approx(0, abs=1e-6)


def test_an_empty_mask_gives_zero_shape_features():
    empty = _views([np.zeros((N, N, N), bool)], ["none"])
    features = view_features(empty)[0]
    assert np.all(np.isfinite(features))
    assert features[VIEW_FEATURES.index("mask_volume_um3")] == 0


def test_a_view_filled_by_its_segment_gets_finite_radii():
    full = view_features(_views([np.ones((N, N, N), bool)], ["soma"]))[0]
    assert np.all(np.isfinite(full))
    half_view_um = N * VOXEL_NM / 1000 / 2
    for name in ("radius_centre_um", "radius_max_um", "radius_mean_um", "radius_p90_um"):
        assert full[VIEW_FEATURES.index(name)] == pytest.approx(half_view_um)


def test_supervised_budget_is_epochs_clipped_to_the_pass_limits():
    settings = SupervisedSettings(epochs=10, min_passes=64, max_passes=256, batch_size=16)
    assert settings.steps(2) == 4  # 20 passes, raised to 64
    assert settings.steps(10) == 7  # 100 passes
    assert settings.steps(1000) == 16  # 10000 passes, cut to 256
    with pytest.raises(ValueError, match="max_passes"):
        SupervisedSettings(min_passes=10, max_passes=5)
    with pytest.raises(ValueError, match="epochs"):
        SupervisedSettings(epochs=0)


def test_supervised_cnn_is_reproducible_and_names_its_classes():
    config = get_preset("tiny")
    rng = np.random.default_rng(0)
    n = 17
    mask = rng.random((6, n, n, n)) > 0.5
    views = LabelledViews(
        rng.integers(0, 255, (6, n, n, n), dtype=np.uint8),
        mask,
        np.array(["axon", "soma"] * 3),
        np.full(6, 1000),
        config.voxel_size_nm,
    )
    settings = SupervisedSettings(epochs=1, min_passes=8, max_passes=8, batch_size=4)
    steps = []
    runs = [
        train_supervised_cnn(
            views,
            config,
            classes=("soma", "axon", "glia"),
            settings=settings,
            seed=3,
            device="cpu",
            progress=lambda done, total: steps.append((done, total)),
        )
        for _ in range(2)
    ]
    assert steps[:2] == [(1, 2), (2, 2)]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    predicted = runs[0].predict(views, batch_size=4, device="cpu")
    assert predicted.shape == (6,) and set(predicted.tolist()) <= {"soma", "axon", "glia"}
    with pytest.raises(ValueError, match="not among the classes"):
        train_supervised_cnn(views, config, classes=("soma", "glia"), settings=settings)
