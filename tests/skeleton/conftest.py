"""Label volumes drawn in numpy with known centre lines, for skeleton tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pytest


def draw_tubes(
    shape: Sequence[int],
    voxel_size: Sequence[float],
    polylines: Sequence[Sequence[Sequence[float]]],
    radius_nm: float,
    label: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Paint ``label`` on voxels whose centre is within ``radius_nm`` of a polyline (nm, z y x).

    Each straight piece is drawn inside its own bounding box only, to stay fast.
    """
    out = np.zeros(tuple(shape), dtype=np.uint64) if out is None else out
    vs = np.asarray(voxel_size, dtype=float)
    for line in polylines:
        for a, b in itertools.pairwise(np.asarray(line, dtype=float)):
            lo = np.clip(np.floor((np.minimum(a, b) - radius_nm) / vs), 0, shape).astype(int)
            hi = np.clip(np.ceil((np.maximum(a, b) + radius_nm) / vs) + 1, 0, shape).astype(int)
            axes = np.ix_(*[np.arange(s, e) * v for s, e, v in zip(lo, hi, vs, strict=True)])
            rel = [ax - a_k for ax, a_k in zip(axes, a, strict=True)]
            ab = b - a
            t = np.clip(
                sum(r * d for r, d in zip(rel, ab, strict=True)) / max(ab @ ab, 1e-12), 0, 1
            )
            dist2 = sum((r - t * d) ** 2 for r, d in zip(rel, ab, strict=True))
            box = out[tuple(slice(s, e) for s, e in zip(lo, hi, strict=True))]
            box[dist2 <= radius_nm**2] = label
    return out


def point_to_polyline(points: np.ndarray, polyline: Sequence[Sequence[float]]) -> np.ndarray:
    """Distance in nm from each point (n, 3) to a polyline."""
    dist = np.full(len(points), np.inf)
    for a, b in itertools.pairwise(np.asarray(polyline, dtype=float)):
        ab = b - a
        t = np.clip((points - a) @ ab / max(ab @ ab, 1e-12), 0, 1)
        dist = np.minimum(dist, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return dist


@pytest.fixture(scope="session", name="draw_tubes")
def draw_tubes_fixture() -> Callable[..., np.ndarray]:
    """``draw(shape, voxel_size, polylines, radius_nm, label=1, out=None)`` → labels."""
    return draw_tubes


@pytest.fixture(scope="session")
def to_polyline() -> Callable[[np.ndarray, Sequence[Sequence[float]]], np.ndarray]:
    """``to_polyline(points, polyline)`` → distance of each point to the polyline in nm."""
    return point_to_polyline
