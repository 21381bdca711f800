"""Heads: classifiers on embeddings, fitted in a second, saved beside the embeddings.

A :class:`Head` standardises its input, runs its network (linear, residual MLP
or SNGP) and turns the logits into a :class:`~.prediction.Prediction` with
uncertainty scores and, once calibrated, a reject option for inputs unlike
the training data.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..aggregate import Aggregation
from ..atomic import write_atomic
from ..exceptions import (
    CheckpointError,
    EmbeddingError,
    LabelError,
    ShapeMismatchError,
    StoreSignatureError,
)
from . import linear, mlp, sngp
from .options import HeadOptions
from .prediction import SCORES, Prediction, RejectRule
from .training import class_weights

HEAD_KINDS = ("linear", "mlp", "sngp")
_MODULES: dict[str, ModuleType] = {"linear": linear, "mlp": mlp, "sngp": sngp}
HEAD_FORMAT = "napari-segclr head"
HEAD_VERSION = 1
#: Rows per forward pass when predicting: bounds memory for millions of nodes.
_CHUNK_ROWS = 1 << 15


@dataclass(frozen=True, eq=False)
class Head:
    """A fitted classifier on embeddings. Make one with :func:`fit_head` or :func:`load_head`.

    Attributes
    ----------
    kind
        "linear", "mlp" or "sngp".
    classes
        The class names, in the order of the probability columns.
    dim
        The embedding dimension it takes.
    network
        The torch module: standardised embeddings → (logits, GP variance or None).
    mean, scale
        (dim,) the standardisation of the input: (embedding - mean) / scale.
    options
        How it was built and fitted.
    encoder_signature
        The model signature of the encoder whose embeddings it was fitted on, if known.
    reject
        The reject rule set by :meth:`calibrate_reject`, or None.
    aggregation
        How its training embeddings were averaged over neighbours (apply the same
        before predicting), or None.
    """

    kind: str
    classes: tuple[str, ...]
    dim: int
    network: nn.Module
    mean: np.ndarray
    scale: np.ndarray
    options: HeadOptions
    encoder_signature: str | None = None
    reject: RejectRule | None = None
    aggregation: Aggregation | None = None

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, K) float32 logits of (N, dim) embeddings (SNGP: mean-field adjusted)."""
        return self._forward(embeddings)[0]

    def predict(self, embeddings: np.ndarray) -> Prediction:
        """Classes, probabilities, uncertainty and rejection for (N, dim) embeddings."""
        logits, variance = self._forward(embeddings)
        return Prediction.from_logits(logits, self.classes, variance=variance, reject=self.reject)

    def calibrate_reject(
        self,
        heldout_embeddings: np.ndarray,
        *,
        coverage: float = 0.95,
        score: str = "dempster_shafer",
    ) -> Head:
        """A copy of this head that rejects inputs less certain than held-out ones.

        Parameters
        ----------
        heldout_embeddings
            In-distribution embeddings the head was not fitted on.
        coverage
            The fraction of them to accept, in (0, 1].
        score
            "dempster_shafer" (default), "entropy", or "variance" (SNGP only).
        """
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
        if score == "variance" and self.kind != "sngp":
            raise ValueError(f"score 'variance' needs an sngp head, this one is {self.kind}")
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        scores = self.predict(heldout_embeddings).score(score)
        rule = RejectRule.calibrate(scores, score=score, coverage=coverage)
        return dataclasses.replace(self, reject=rule)

    def check_encoder(self, encoder_signature: str | None) -> None:
        """Refuse embeddings of another encoder (where both signatures are known)."""
        mine = self.encoder_signature
        if encoder_signature is None or mine is None or encoder_signature == mine:
            return
        raise StoreSignatureError(
            f"the head was fitted on embeddings of encoder {mine[:12]}…, these come from "
            f"encoder {str(encoder_signature)[:12]}…; fit a head on this encoder's embeddings"
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the head to ``path`` (an .npz file), atomically: never half a file."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": HEAD_FORMAT,
            "version": HEAD_VERSION,
            "kind": self.kind,
            "classes": list(self.classes),
            "dim": self.dim,
            "options": self.options.to_dict(),
            "encoder_signature": self.encoder_signature,
            "reject": None if self.reject is None else dataclasses.asdict(self.reject),
            "aggregation": (
                None if self.aggregation is None else dataclasses.asdict(self.aggregation)
            ),
        }
        arrays = {
            f"state/{k}": v.detach().cpu().numpy() for k, v in self.network.state_dict().items()
        }
        arrays.update(meta=np.array(json.dumps(meta)), mean=self.mean, scale=self.scale)
        write_atomic(path, lambda f: np.savez(f, **arrays))

    def _forward(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = as_embeddings(embeddings, dim=self.dim)
        x = (x - self.mean) / self.scale
        logits, variances = [], []
        with torch.inference_mode():
            for start in range(0, max(len(x), 1), _CHUNK_ROWS):
                chunk = torch.from_numpy(x[start : start + _CHUNK_ROWS])
                out, variance = self.network(chunk)
                logits.append(out.numpy())
                if variance is not None:
                    variances.append(variance.numpy())
        return np.concatenate(logits), np.concatenate(variances) if variances else None


def fit_head(
    embeddings: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    *,
    kind: str = "linear",
    classes: Sequence[str] | None = None,
    balance: bool = True,
    encoder_signature: str | None = None,
    seed: int = 0,
    options: HeadOptions | None = None,
    aggregation: Aggregation | None = None,
) -> Head:
    """Fit a classifier head on labelled embeddings.

    Parameters
    ----------
    embeddings
        (N, D) finite embeddings.
    labels
        (N,) class names (numbers are taken as names).
    kind
        "linear" (logistic regression), "mlp" (shallow residual MLP) or "sngp"
        (MLP with a Gaussian-process output: uncertainty that grows away from
        the training data).
    classes
        The class order of the outputs; default: the sorted distinct labels.
        Every class needs at least 2 labelled examples.
    balance
        Weight the loss by inverse class frequency, so rare classes count as
        much as common ones.
    encoder_signature
        ``model_signature`` of the encoder that made the embeddings; recorded
        and checked against embeddings of other encoders.
    seed
        The fit is deterministic for a seed (and a number of torch threads).
    options
        Network and fitting settings (:class:`HeadOptions`).
    aggregation
        How ``embeddings`` were averaged over neighbours, recorded so that
        predictions average the same way.

    Raises
    ------
    LabelError
        Fewer than two classes, a class with fewer than two examples, or labels
        outside ``classes``.
    EmbeddingError, ShapeMismatchError
        Embeddings that are not finite numbers, or not one row per label.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"kind must be one of {', '.join(HEAD_KINDS)}; got {kind!r}")
    options = options or HeadOptions()
    x = as_embeddings(embeddings)
    names = _class_names(labels, len(x))
    classes = _check_classes(names, classes)
    y = torch.from_numpy(pd.Categorical(names, categories=classes).codes.astype(np.int64))
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    scale = np.where(std > 1e-6, std, 1.0)  # a constant column carries nothing to scale
    xs = torch.from_numpy(((x - mean) / scale).astype(np.float32))
    weights = class_weights(y, len(classes), balance=balance)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        network = _MODULES[kind].fit(
            xs, y, weights, n_classes=len(classes), options=options, generator=generator
        )
    return Head(
        kind=kind,
        classes=classes,
        dim=x.shape[1],
        network=network,
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        options=options,
        encoder_signature=None if encoder_signature is None else str(encoder_signature),
        aggregation=aggregation,
    )


def load_head(path: str | os.PathLike[str], *, encoder_signature: str | None = None) -> Head:
    """Read a head written by :meth:`Head.save`.

    Raises ``CheckpointError`` for a missing file or one that is no head, and
    ``StoreSignatureError`` where ``encoder_signature`` is given and differs
    from the one the head was fitted with.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"head file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"{path} is not a napari-segclr head ({type(error).__name__})"
        ) from error
    if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
        raise CheckpointError(f"{path} is not a napari-segclr head")
    if meta.get("version") != HEAD_VERSION:
        raise CheckpointError(
            f"{path} has head version {meta.get('version')!r}; "
            f"this napari-segclr reads version {HEAD_VERSION}"
        )
    try:
        kind, classes, dim = meta["kind"], tuple(meta["classes"]), int(meta["dim"])
        options = HeadOptions.from_dict(meta["options"])
        network = _MODULES[kind].build(dim, len(classes), options)
        state = {
            k.removeprefix("state/"): torch.from_numpy(v)
            for k, v in arrays.items()
            if k.startswith("state/")
        }
        network.load_state_dict(state)
        reject = None if meta["reject"] is None else RejectRule(**meta["reject"])
        aggregation = None if meta["aggregation"] is None else Aggregation(**meta["aggregation"])
        head = Head(
            kind=kind,
            classes=classes,
            dim=dim,
            network=network.eval(),
            mean=arrays["mean"],
            scale=arrays["scale"],
            options=options,
            encoder_signature=meta["encoder_signature"],
            reject=reject,
            aggregation=aggregation,
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} holds an invalid head: {error}") from error
    head.check_encoder(encoder_signature)
    return head


def as_embeddings(embeddings: np.ndarray, *, dim: int | None = None) -> np.ndarray:
    """``embeddings`` as a C-contiguous (N, D) float32 array of finite numbers."""
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise ShapeMismatchError(f"embeddings must be a 2D (N, D) array, got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ShapeMismatchError(f"embeddings are {array.shape[1]}-d but the head takes {dim}-d")
    if array.dtype.kind not in "biuf":
        raise EmbeddingError(f"embeddings must be numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise EmbeddingError(f"embeddings hold NaN or infinite values (first in row {bad})")
    return array


def _class_names(labels: Sequence[Any] | np.ndarray, n: int) -> np.ndarray:
    values = np.asarray(labels, dtype=object)
    if values.ndim != 1 or len(values) != n:
        raise ShapeMismatchError(
            f"labels must be one per embedding row: {values.shape} for {n} rows"
        )
    missing = pd.isna(values)
    if missing.any():
        raise LabelError(f"label of row {int(np.flatnonzero(missing)[0])} is missing")
    return values.astype(str)


def _check_classes(names: np.ndarray, classes: Sequence[str] | None) -> tuple[str, ...]:
    if len(names) == 0:
        raise LabelError("no labelled examples: a head needs at least two classes")
    present, counts = np.unique(names, return_counts=True)
    order = tuple(present.tolist()) if classes is None else tuple(str(c) for c in classes)
    if len(set(order)) != len(order):
        raise LabelError(f"classes must be distinct, got {list(order)}")
    unknown = sorted(set(present.tolist()) - set(order))
    if unknown:
        raise LabelError(f"labels {unknown} are not among the classes {list(order)}")
    if len(order) < 2:
        raise LabelError(f"the labels name one class ({order[0]!r}); a head needs at least two")
    count = dict(zip(present.tolist(), counts.tolist(), strict=True))
    few = [f"{c!r} ({count.get(c, 0)})" for c in order if count.get(c, 0) < 2]
    if few:
        raise LabelError(
            f"every class needs at least 2 labelled examples; too few: {', '.join(few)}"
        )
    return order
