"""SNGP: distance-aware uncertainty from spectral-normalised layers and a GP output layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segclr.heads import Head, fit_head

from .conftest import DIM, FAST, blobs, one_torch_thread


@pytest.fixture(scope="module")
def head(train) -> Head:
    with one_torch_thread():
        return fit_head(*train, kind="sngp", options=FAST)


def test_variance_grows_and_confidence_falls_far_from_the_data(head, test_set):
    near = head.predict(test_set[0])
    rng = np.random.default_rng(4)
    # Far out: 5x the scale of the data; aside: a cluster where no class lies.
    far = head.predict(5 * test_set[0])
    aside = head.predict((-6 * np.ones(DIM) + rng.normal(size=(300, DIM))).astype(np.float32))
    for ood in (far, aside):
        assert np.median(ood.variance) > np.median(near.variance) + 0.2
        assert np.median(ood.confidence) < np.median(near.confidence) - 0.2
        assert np.median(ood.dempster_shafer) > np.median(near.dempster_shafer)
        # Every unfamiliar input is less certain than 95 % of the familiar ones.
        assert np.mean(ood.variance > np.quantile(near.variance, 0.95)) > 0.95
    # The prior variance of the random-feature GP is ‖φ‖² ≈ 1: the training data pull it
    # well below that nearby, far inputs stay close to it.
    assert (near.variance > 0).all() and np.median(near.variance) < 0.4
    assert 0.6 < np.median(far.variance) <= 1.05


def test_hidden_layers_keep_spectral_norm_at_most_one(head):
    for block in head.network.blocks:
        assert torch.linalg.matrix_norm(block.weight, ord=2) <= 1.0 + 1e-3


def test_mean_field_logits_shrink_with_the_variance(head):
    x = torch.from_numpy(((blobs(50, seed=9)[0] - head.mean) / head.scale).astype(np.float32))
    with torch.no_grad():
        raw = head.network.train_logits(x)
        logits, variance = head.network(x)
    expected = raw / torch.sqrt(1 + np.pi / 8 * variance)[:, None]
    torch.testing.assert_close(logits, expected)
