"""The SegCLR model (encoder + projection head), its cost, checkpoints and signature."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..atomic import write_atomic
from ..exceptions import CheckpointError, ShapeMismatchError
from ..views.spec import UINT8_SCALE
from .encoder import SegclrEncoder
from .heads import ProjectionHead
from .presets import ModelConfig

CHECKPOINT_FORMAT = "napari-segclr/model"
CHECKPOINT_VERSION = 1


class SegclrModel(nn.Module):
    """SegCLR network: views (B, C, Z, Y, X) → 64-d embeddings, plus 16-d projections.

    Views must have ``config.in_channels`` channels and ``config.view_shape``
    voxels. The model runs in channels-last 3D (``model.to(memory_format=
    torch.channels_last_3d)`` and views likewise) and under bf16 autocast.

    Examples
    --------
    >>> import torch
    >>> from napari_segclr.model import get_preset
    >>> model = SegclrModel(get_preset("tiny")).eval()
    >>> views = torch.rand(2, 1, 17, 17, 17)
    >>> embedding, projection = model(views)
    >>> embedding.shape, projection.shape
    (torch.Size([2, 64]), torch.Size([2, 16]))
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = SegclrEncoder(config)
        self.projection_head = ProjectionHead(
            config.embedding_dim, config.projection_hidden, config.projection_dim
        )

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, embedding_dim) of views (B, C, Z, Y, X): the product.

        Float views, or uint8 views (``extract_views(..., dtype="uint8")``), which
        are scaled to floats here, on their device.
        """
        self._check_views(views)
        if views.dtype == torch.uint8:
            views = views.float() / UINT8_SCALE
        return self.encoder(views)

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, embedding_dim) and projections (B, projection_dim) for the loss."""
        embedding = self.embed(views)
        return embedding, self.projection_head(embedding)

    def _check_views(self, views: torch.Tensor) -> None:
        expected = (self.config.in_channels, *self.config.view_shape)
        if views.ndim != 5 or tuple(views.shape[1:]) != expected:
            raise ShapeMismatchError(
                f"views must have shape (B, {', '.join(map(str, expected))}) for this model, "
                f"got {tuple(views.shape)}"
            )
        if not views.is_floating_point() and views.dtype != torch.uint8:
            raise TypeError(f"views must be a float or uint8 tensor, got {views.dtype}")


def count_flops(config: ModelConfig) -> float:
    """FLOPs of one view through the encoder and embedding MLP (the inference cost).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device
    (no memory, no compute): 2 FLOPs per multiply-add of the convolutions and
    linear layers; batch norm, activations and pooling are not counted (≈1 %).
    """
    with torch.device("meta"):
        encoder = SegclrEncoder(config).eval()
        views = torch.empty(1, config.in_channels, *config.view_shape)
    with FlopCounterMode(display=False) as counter:
        encoder(views)
    return float(counter.get_total_flops())


def save_checkpoint(path: str | os.PathLike, model: SegclrModel, *, extra: dict) -> None:
    """Write weights, the full config and ``extra`` (JSON-able, e.g. data provenance).

    The file appears atomically: it is written beside ``path`` and renamed, so a
    reader never sees half a checkpoint.
    """
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra must be JSON-serialisable: {error}") from None
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": state,
        "extra": extra,
    }
    atomic_torch_save(payload, path)


def atomic_torch_save(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never half a file."""
    write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[SegclrModel, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns the model, in eval mode on ``map_location``, and the ``extra`` dict.
    Raises :class:`~napari_segclr.exceptions.CheckpointError` for a missing file,
    a file that is not a napari-segclr checkpoint, or weights that do not match
    the stored config.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a napari-segclr checkpoint ({type(error).__name__})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a napari-segclr checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {payload.get('version')!r}; "
            f"this napari-segclr reads version {CHECKPOINT_VERSION}"
        )
    try:
        config = ModelConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds an invalid model config: {error}") from error
    model = SegclrModel(config)
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"the weights in {path} do not match its model config") from error
    return model.to(map_location).eval(), dict(payload.get("extra", {}))


def model_signature(model: SegclrModel) -> str:
    """A stable hex digest of the config and all weights and buffers.

    Equal for equal models whatever their device, dtype of the inputs or memory
    format; it changes with any weight or batch-norm statistic. Use it to key
    stored embeddings to the model that made them.
    """
    return weights_digest(model, salt=json.dumps(model.config.to_dict(), sort_keys=True))


def weights_digest(module: nn.Module, *, salt: str = "") -> str:
    """A stable hex digest of ``salt`` and every weight and buffer of a network.

    Equal whatever the device or memory format; any changed value changes it.
    """
    digest = hashlib.sha256(salt.encode())
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
