"""What SegCLR embeddings are compared with: a supervised 3D CNN and hand-crafted features.

* :func:`train_supervised_cnn`: the model's own network (its encoder config,
  randomly initialised) with a linear classifier on its embedding, trained
  from scratch on labelled views with cross-entropy and the SegCLR
  augmentations, for a budget of view passes.
* :func:`view_features` + :func:`fit_forest`: shape and intensity features of
  each view (mask volume, surface, calibre from the distance transform, shape
  moments, EM statistics inside and outside the mask) and a random forest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cc3d
import edt
import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from ..embed import resolve_device
from ..model import ModelConfig, SegclrAugment, SegclrModel
from .synthetic import LabelledViews

#: The columns of :func:`view_features`; lengths in µm, EM in [0, 1].
VIEW_FEATURES: tuple[str, ...] = (
    "mask_volume_um3",
    "surface_um2",
    "surface_per_volume_per_um",
    "mask_fraction_centre",
    "pieces",
    "radius_centre_um",
    "radius_max_um",
    "radius_mean_um",
    "radius_p90_um",
    "extent_major_um",
    "extent_middle_um",
    "extent_minor_um",
    "em_mean_inside",
    "em_std_inside",
    "em_p10_inside",
    "em_p50_inside",
    "em_p90_inside",
    "em_dark_fraction_inside",
    "em_mean_outside",
)
#: EM below this (in [0, 1]) counts as dark: membranes, mitochondria, myelin.
DARK_EM = 0.35

Progress = Callable[[int, int], None]


def view_features(views: LabelledViews, *, batch_size: int = 64) -> np.ndarray:
    """Hand-crafted features (N, len(VIEW_FEATURES)) float64 of every view.

    Shape features come from the segment mask, intensity features from the EM
    inside (and outside) it; see :data:`VIEW_FEATURES`. A view whose mask
    is empty gets zeros for what needs a mask.
    """
    out = np.empty((len(views), len(VIEW_FEATURES)))
    for start in range(0, len(views), batch_size):
        index = slice(start, start + batch_size)
        out[index] = batch_features(views.em[index], views.mask[index], views.voxel_size_nm)
    return out


def batch_features(
    em_u8: np.ndarray, mask: np.ndarray, voxel_size_nm: Sequence[float]
) -> np.ndarray:
    """:func:`view_features` of uint8 EM and bool mask views (B, Z, Y, X)."""
    vs = np.asarray(voxel_size_nm, float) / 1000.0  # µm
    b, *shape = mask.shape
    flat_mask = mask.reshape(b, -1)
    count = flat_mask.sum(axis=1)
    volume = count * np.prod(vs)
    # Faces between mask and background inside the view (the view's own faces are no surface).
    face_area = np.array([vs[1] * vs[2], vs[0] * vs[2], vs[0] * vs[1]])
    surface = sum(
        np.count_nonzero(np.diff(mask, axis=axis + 1), axis=(1, 2, 3)) * face_area[axis]
        for axis in range(3)
    )
    quarter = tuple(slice(n // 4, n - n // 4) for n in shape)
    centre_fill = mask[(slice(None), *quarter)].reshape(b, -1).mean(axis=1)

    # Second moments of the mask's voxel positions: its extent along its principal axes.
    grid = np.stack(
        np.meshgrid(
            *[(np.arange(n) - (n - 1) / 2) * v for n, v in zip(shape, vs, strict=True)],
            indexing="ij",
        ),
        axis=-1,
    ).reshape(-1, 3)
    weights = flat_mask.astype(np.float64) / np.maximum(count, 1)[:, None]
    mean = weights @ grid
    second = np.einsum("bn,ni,nj->bij", weights, grid, grid) - mean[:, :, None] * mean[:, None, :]
    extents = np.sqrt(np.clip(np.linalg.eigvalsh(second)[:, ::-1], 0, None))

    flat_em = em_u8.reshape(b, -1) / 255.0
    em_inside_sum = (flat_em * flat_mask).sum(axis=1)
    em_mean = em_inside_sum / np.maximum(count, 1)
    em_std = np.sqrt(
        np.clip((flat_em**2 * flat_mask).sum(axis=1) / np.maximum(count, 1) - em_mean**2, 0, None)
    )
    outside_count = np.maximum(flat_mask.shape[1] - count, 1)
    em_outside = (flat_em.sum(axis=1) - em_inside_sum) / outside_count
    per_view = np.zeros((b, 9))
    centre = tuple(slice((n - 1) // 2 - 1, (n - 1) // 2 + 2) for n in shape)
    min_half_view = float(np.min(np.asarray(shape) * vs) / 2)
    for i in range(b):
        if not count[i]:
            continue
        radius = edt.edt(mask[i], anisotropy=tuple(vs), black_border=False)
        # A view inside a soma holds no background: its radius is at least the half view.
        np.minimum(radius, min_half_view, out=radius)
        inner = radius[mask[i]]
        values = flat_em[i][flat_mask[i]]
        per_view[i] = (
            cc3d.connected_components(mask[i], connectivity=26, return_N=True)[1],
            radius[centre].max(),
            inner.max(),
            inner.mean(),
            np.percentile(inner, 90),
            *np.percentile(values, (10, 50, 90)),
            np.mean(values < DARK_EM),
        )
    return np.column_stack(
        [
            volume,
            surface,
            surface / np.maximum(volume, 1e-9),
            centre_fill,
            per_view[:, 0],
            per_view[:, 1:5],
            extents,
            em_mean,
            em_std,
            per_view[:, 5:9],
            em_outside,
        ]
    )


def fit_forest(
    features: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> RandomForestClassifier:
    """A class-balanced random forest (100 trees, one thread) on view features."""
    forest = RandomForestClassifier(
        n_estimators=100, class_weight="balanced", random_state=seed, n_jobs=1
    )
    return forest.fit(features, labels)


@dataclass(frozen=True)
class SupervisedSettings:
    """How long and how the supervised CNN baseline trains.

    The budget is counted in view passes (a view through the network and back):
    ``epochs`` passes over the labelled views, but at least ``min_passes`` and
    at most ``max_passes``, in batches of ``batch_size`` drawn class-balanced
    from the labelled views. AdamW with a cosine-decayed learning rate; the
    SegCLR augmentations (intensity, flips, axis permutations) on every batch.
    """

    epochs: int = 30
    min_passes: int = 256
    max_passes: int = 1024
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("epochs", "min_passes", "max_passes", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_passes < self.min_passes:
            raise ValueError(
                f"max_passes ({self.max_passes}) must be at least min_passes ({self.min_passes})"
            )
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")

    def steps(self, n_labelled: int) -> int:
        """Optimiser steps for ``n_labelled`` labelled views."""
        passes = min(max(self.epochs * n_labelled, self.min_passes), self.max_passes)
        return max(1, math.ceil(passes / self.batch_size))


class SupervisedCnn(nn.Module):
    """A SegCLR network with a linear classifier on its embedding, trained on labels alone.

    Attributes
    ----------
    classes
        Class names, in the order of the classifier's outputs.
    network
        The :class:`~napari_segclr.model.SegclrModel` (its projection head unused).
    classifier
        ``nn.Linear(embedding_dim, len(classes))``.
    """

    def __init__(self, config: ModelConfig, classes: Sequence[str]) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.network = SegclrModel(config)
        self.classifier = nn.Linear(config.embedding_dim, len(self.classes))

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of views (B, C, Z, Y, X)."""
        return self.classifier(self.network.embed(views))

    def predict(
        self, views: LabelledViews, *, batch_size: int = 32, device: str = "auto"
    ) -> np.ndarray:
        """Predicted class names (N,) of ``views``."""
        target = resolve_device(device)
        model = self.to(target).eval()
        kinds = self.network.config.input_kinds
        found = []
        with torch.inference_mode():
            for start in range(0, len(views), batch_size):
                batch = views.inputs(slice(start, start + batch_size), kinds)
                x = (
                    torch.from_numpy(batch)
                    .to(target)
                    .contiguous(memory_format=torch.channels_last_3d)
                )
                found.append(model(x).argmax(dim=1).cpu().numpy())
        index = np.concatenate(found) if found else np.zeros(0, int)
        return np.asarray(self.classes)[index]


def train_supervised_cnn(
    views: LabelledViews,
    config: ModelConfig,
    *,
    classes: Sequence[str],
    settings: SupervisedSettings | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: Progress | None = None,
) -> SupervisedCnn:
    """Train :class:`SupervisedCnn` from random weights on labelled ``views``.

    Every step draws ``settings.batch_size`` views, each class equally likely
    (then each view of the class), augments them and takes one AdamW step on
    the cross-entropy; ``progress(done, total)`` follows the steps.
    """
    classes = tuple(classes)
    known = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(views.labels.tolist()) - set(known))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
    if not len(views):
        raise ValueError("no labelled views to train on")
    settings = settings or SupervisedSettings()
    target = resolve_device(device)
    labels = np.array([known[name] for name in views.labels.tolist()])
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    draw = 1.0 / counts[inverse]
    draw /= draw.sum()
    steps = settings.steps(len(views))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SupervisedCnn(config, classes)
    model = model.to(target, memory_format=torch.channels_last_3d).train()
    augment = SegclrAugment.from_config(config, seed=seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        pick = rng.choice(len(views), size=settings.batch_size, p=draw)
        x = torch.from_numpy(views.inputs(pick, config.input_kinds)).to(target)
        x = augment(x.contiguous(memory_format=torch.channels_last_3d))
        loss = nn.functional.cross_entropy(model(x), torch.from_numpy(labels[pick]).to(target))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, steps)
    return model.eval()
