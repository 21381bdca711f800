"""What a head says about each node and each segment: classes, probabilities, uncertainty.

Numpy only (no torch), so results can be built, combined and shown anywhere.
Three uncertainty scores, each larger for less certain inputs:

- ``entropy``: the predictive entropy of the class probabilities, in nats
  (0 … log K);
- ``dempster_shafer``: K / (K + Σ exp(logits)), near 1 where all logits are
  small (no class has evidence), near 0 where one is large;
- ``variance``: the Gaussian-process predictive variance of an SNGP head
  (about 1 far from the training data, small near it); NaN for other heads.

A :class:`RejectRule` marks an input as out of distribution where its score
is above a threshold chosen on held-out data for a target coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit, logsumexp, softmax

from ..store.table import as_segment_ids

#: The uncertainty scores a reject rule may threshold (larger: less certain).
SCORES = ("entropy", "dempster_shafer", "variance")


@dataclass(frozen=True)
class RejectRule:
    """Reject inputs whose uncertainty ``score`` is above ``threshold``.

    Attributes
    ----------
    score
        "entropy", "dempster_shafer" or "variance".
    threshold
        The largest accepted score.
    coverage
        The fraction of held-out, in-distribution inputs the threshold accepts.
    """

    score: str
    threshold: float
    coverage: float

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {self.score!r}")
        if not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold}")
        if not 0 < self.coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {self.coverage}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "coverage", float(self.coverage))

    @classmethod
    def calibrate(cls, scores: np.ndarray, *, score: str, coverage: float) -> RejectRule:
        """The rule accepting a ``coverage`` fraction of ``scores`` (held-out inputs).

        The threshold is the smallest score with at least ``coverage`` of the
        scores at or below it.
        """
        values = np.asarray(scores, dtype=np.float64).ravel()
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage}")
        if len(values) == 0:
            raise ValueError("calibrating a reject rule needs at least one held-out example")
        if not np.isfinite(values).all():
            raise ValueError(f"the held-out {score} scores are not all finite")
        threshold = np.quantile(values, coverage, method="inverted_cdf")
        return cls(score, float(threshold), float(coverage))

    def rejects(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask: True where the score is above the threshold."""
        return np.asarray(scores, dtype=np.float64) > self.threshold


@dataclass(frozen=True, eq=False)
class Prediction:
    """A head's prediction for N inputs (all arrays have length N).

    Attributes
    ----------
    classes
        The class names, in the order of the probability columns.
    probabilities
        (N, K) float32 class probabilities.
    entropy, dempster_shafer, variance
        (N,) float32 uncertainty scores (see the module docs); ``variance`` is
        NaN for heads without one.
    labels
        (N,) predicted class names.
    confidence
        (N,) the largest probability.
    rejected
        (N,) True where ``reject`` marks the input as out of distribution.
    reject
        The head's reject rule, or None (then nothing is rejected).
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    entropy: np.ndarray
    dempster_shafer: np.ndarray
    variance: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    rejected: np.ndarray
    reject: RejectRule | None = None

    @classmethod
    def from_logits(
        cls,
        logits: np.ndarray,
        classes: tuple[str, ...],
        *,
        variance: np.ndarray | None = None,
        reject: RejectRule | None = None,
    ) -> Prediction:
        """The prediction for (N, K) ``logits`` (and a GP ``variance`` where there is one)."""
        logits = np.asarray(logits, dtype=np.float64)
        n, k = logits.shape
        if k != len(classes):
            raise ValueError(f"{k} logit columns for {len(classes)} classes")
        probabilities = softmax(logits, axis=1)
        log_p = logits - logsumexp(logits, axis=1, keepdims=True)
        entropy = -(probabilities * log_p).sum(axis=1)
        # K / (K + Σ exp(l)) without overflow: a sigmoid of log K - logsumexp(l).
        dempster_shafer = expit(np.log(k) - logsumexp(logits, axis=1))
        variance = np.full(n, np.nan) if variance is None else np.asarray(variance)
        best = probabilities.argmax(axis=1)
        scores = {"entropy": entropy, "dempster_shafer": dempster_shafer, "variance": variance}
        return cls(
            classes=tuple(classes),
            probabilities=probabilities.astype(np.float32),
            entropy=entropy.astype(np.float32),
            dempster_shafer=dempster_shafer.astype(np.float32),
            variance=variance.astype(np.float32),
            labels=np.asarray(classes)[best],
            confidence=probabilities[np.arange(n), best].astype(np.float32),
            rejected=np.zeros(n, bool) if reject is None else reject.rejects(scores[reject.score]),
            reject=reject,
        )

    def __len__(self) -> int:
        return len(self.probabilities)

    def score(self, name: str) -> np.ndarray:
        """The uncertainty score called ``name`` ("entropy", "dempster_shafer", "variance")."""
        if name not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {name!r}")
        return getattr(self, name)

    def to_frame(self) -> pd.DataFrame:
        """label, confidence, p_<class> …, entropy, dempster_shafer, variance, rejected."""
        return _frame(self, {})


@dataclass(frozen=True, eq=False)
class SegmentPrediction:
    """A prediction per segment, combined from its nodes' predictions.

    Attributes
    ----------
    segment_id
        (S,) uint64 distinct segment ids, ascending.
    n_nodes
        (S,) how many nodes each segment's prediction combines.
    classes, probabilities, labels, confidence
        As in :class:`Prediction`, from the normalised geometric mean of the
        nodes' class probabilities.
    entropy, dempster_shafer, variance
        (S,) the mean of the nodes' scores.
    rejected
        (S,) True where the mean of the nodes' reject score is above the
        threshold of the reject rule.
    """

    segment_id: np.ndarray
    n_nodes: np.ndarray
    classes: tuple[str, ...]
    probabilities: np.ndarray
    entropy: np.ndarray
    dempster_shafer: np.ndarray
    variance: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    rejected: np.ndarray

    def __len__(self) -> int:
        return len(self.segment_id)

    def to_frame(self) -> pd.DataFrame:
        """segment_id, n_nodes, then the columns of :meth:`Prediction.to_frame`."""
        return _frame(self, {"segment_id": self.segment_id, "n_nodes": self.n_nodes})


def combine_segments(pred: Prediction, segment_ids: np.ndarray) -> SegmentPrediction:
    """Combine node predictions into one per segment.

    Parameters
    ----------
    pred
        The prediction of N nodes.
    segment_ids
        (N,) the segment of each node.
    """
    segments = as_segment_ids(segment_ids, name="segment_ids")
    if len(segments) != len(pred):
        raise ValueError(f"{len(segments)} segment ids for a prediction of {len(pred)} nodes")
    ids, inverse, counts = np.unique(segments, return_inverse=True, return_counts=True)
    n = len(segments)
    # Rows: segments, columns: nodes, each row averaging its nodes.
    mean = sp.csr_array((1.0 / counts[inverse], (inverse, np.arange(n))), shape=(len(ids), n))
    log_p = np.log(np.maximum(pred.probabilities.astype(np.float64), np.finfo(np.float64).tiny))
    probabilities = softmax(mean @ log_p, axis=1)
    scores = {name: mean @ pred.score(name).astype(np.float64) for name in SCORES}
    rule = pred.reject
    best = probabilities.argmax(axis=1)
    return SegmentPrediction(
        segment_id=ids,
        n_nodes=counts.astype(np.int64),
        classes=pred.classes,
        probabilities=probabilities.astype(np.float32),
        entropy=scores["entropy"].astype(np.float32),
        dempster_shafer=scores["dempster_shafer"].astype(np.float32),
        variance=scores["variance"].astype(np.float32),
        labels=np.asarray(pred.classes)[best],
        confidence=probabilities[np.arange(len(ids)), best].astype(np.float32),
        rejected=(np.zeros(len(ids), bool) if rule is None else rule.rejects(scores[rule.score])),
    )


def _frame(pred: Prediction | SegmentPrediction, keys: dict[str, np.ndarray]) -> pd.DataFrame:
    columns = {**keys, "label": pred.labels, "confidence": pred.confidence}
    columns.update({f"p_{name}": pred.probabilities[:, i] for i, name in enumerate(pred.classes)})
    columns.update(
        entropy=pred.entropy,
        dempster_shafer=pred.dempster_shafer,
        variance=pred.variance,
        rejected=pred.rejected,
    )
    return pd.DataFrame(columns)
