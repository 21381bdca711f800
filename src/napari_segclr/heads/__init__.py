"""Classifier heads on embeddings: linear, residual MLP and SNGP, with uncertainty.

Fit a head on labelled embeddings, predict with uncertainty, reject what looks
unlike the training data, and combine node predictions per segment::

    from napari_segclr.heads import combine_segments, fit_head, load_head

    head = fit_head(train_embeddings, train_labels, kind="sngp")
    head = head.calibrate_reject(heldout_embeddings, coverage=0.95)
    head.save("compartments.head.npz")
    pred = load_head("compartments.head.npz").predict(table.embedding)
    per_segment = combine_segments(pred, table.segment_id)

For cell types, average embeddings over a radius first
(:func:`napari_segclr.aggregate.aggregate_embeddings`).
"""

from .base import HEAD_KINDS, Head, fit_head, load_head
from .labels import select_labelled
from .options import HeadOptions
from .prediction import SCORES, Prediction, RejectRule, SegmentPrediction, combine_segments

__all__ = [
    "HEAD_KINDS",
    "SCORES",
    "Head",
    "HeadOptions",
    "Prediction",
    "RejectRule",
    "SegmentPrediction",
    "combine_segments",
    "fit_head",
    "load_head",
    "select_labelled",
]
