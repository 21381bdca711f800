"""Training tiles: where they are cut, how they are flipped, what their targets say."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.io import Volume
from napari_segclr.mae import MAEConfig, get_preset, labels_to_affinities
from napari_segclr.mae.data import TileSampler, labelled_tiles, measure_intensity, raw_tiles

# Raw values equal to the label ids: a tile's image shows its labels.
IDENTITY = MAEConfig(**{**get_preset("tiny").to_dict(), "intensity_mean": 0, "intensity_std": 1})


def blocks(shape) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (1 + (z // 3) * 25 + (y // 5) * 5 + x // 7).astype(np.uint32)  # ids 1..250


def test_tiles_cover_every_volume_in_proportion_to_its_size():
    big = Volume(np.zeros((20, 40, 40), np.uint8), 10.0)
    small = Volume(np.zeros((8, 16, 16), np.uint8), 10.0)  # a single tile position
    boxes = TileSampler([big, small], (8, 16, 16)).draw(4000, np.random.default_rng(0))
    from_small = sum(volume is small for volume, _ in boxes)
    assert from_small == pytest.approx(4000 / (13 * 25 * 25 + 1), abs=4)
    starts = np.array([[s.start for s in box] for volume, box in boxes if volume is big])
    assert starts.min(0).tolist() == [0, 0, 0] and starts.max(0).tolist() == [12, 24, 24]


def test_intensity_is_measured_on_random_tiles():
    values = np.random.default_rng(0).normal(120, 30, (16, 48, 48)).clip(0, 255)
    volume = Volume(values.astype(np.uint8), 10.0)
    mean, std = measure_intensity([volume], (8, 16, 16), seed=0)
    assert mean == pytest.approx(120, abs=2) and std == pytest.approx(30, abs=2)
    assert measure_intensity([volume], (8, 16, 16), seed=0) == (mean, std)
    flat = Volume(np.full((8, 16, 16), 7, np.uint8), 10.0)
    assert measure_intensity([flat], (8, 16, 16), seed=0) == (7.0, 1.0)


def test_raw_tiles_are_normalised_and_flipped_copies_of_the_volume():
    labels = blocks((12, 24, 24))
    volume = Volume(labels.astype(np.uint8), 10.0)
    generator = np.random.default_rng(1)
    tiles = raw_tiles(TileSampler([volume], (8, 16, 16)), IDENTITY, generator, count=6, flips=True)
    assert tiles.shape == (6, 1, 8, 16, 16) and tiles.dtype == np.float32
    # Every tile is a crop of the volume up to flips: its sorted values are a crop's.
    values = {tuple(np.sort(labels[z : z + 8, y : y + 16, x : x + 16], axis=None))
              for z in range(5) for y in range(9) for x in range(9)}  # fmt: skip
    assert all(tuple(np.sort(t, axis=None).astype(int)) in values for t in tiles)


def test_affinities_follow_their_tile_through_flips_and_swaps():
    labels = blocks((12, 24, 24))
    raw = Volume(labels.astype(np.uint8), 10.0)
    seg = Volume(labels, 10.0, kind="labels")
    images, targets, valid = labelled_tiles(
        raw, seg, IDENTITY, np.random.default_rng(2), count=8, flips=True
    )
    assert targets.shape == valid.shape == (8, 3, 8, 16, 16)
    for image, target in zip(images, targets, strict=True):
        expected = labels_to_affinities(image[0].astype(np.uint32))
        for axis in range(3):
            beyond_first = [slice(None)] * 3
            beyond_first[axis] = slice(1, None)
            index = (axis, *beyond_first)
            assert np.array_equal(target[index], expected[index])


def test_first_planes_are_known_inside_the_volume_and_unknown_at_its_faces():
    labels = blocks((8, 24, 24))  # tiles span all of z: every tile starts at z = 0
    raw = Volume(labels.astype(np.uint8), 10.0)
    seg = Volume(labels, 10.0, kind="labels")
    _, targets, valid = labelled_tiles(
        raw, seg, IDENTITY, np.random.default_rng(3), count=8, flips=False
    )
    assert not valid[:, 0, 0].any() and valid[:, 0, 1:].all()
    assert valid[:, 1, :, 1:].all() and valid[:, 2, :, :, 1:].all()
    # Along y, a tile starting inside the volume knows its first plane's neighbours.
    inner = [i for i in range(8) if valid[i, 1, :, 0].all()]
    assert inner and all(targets[i, 1, :, 0].any() for i in inner)
