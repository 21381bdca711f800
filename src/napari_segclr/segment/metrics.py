"""Segmentation quality against ground truth: variation of information and adapted Rand error.

Conventions (those of scikit-image's ``skimage.metrics``, which computes the
scores here from one contingency table):

- Voxels whose **truth** label is 0 are left out of every score (unlabelled
  ground truth). A 0 in the prediction is an ordinary segment: unsegmented
  voxels count as one big (merged) segment.
- Variation of information is in bits and split into its two conditional
  entropies: *split* = H(pred | truth), over-segmentation; *merge* =
  H(truth | pred), under-segmentation.
- Adapted Rand error (SNEMI3D) = 1 − F-score of the Rand precision and recall
  over pairs of voxels. Precision = the fraction of voxel pairs in one
  predicted segment that are in one true segment (merges lower it); recall =
  the fraction of pairs in one true segment that are in one predicted segment
  (splits lower it). They are computed here because ``adapted_rand_error`` of
  scikit-image ≤ 0.26 returns them swapped (scikit-image issue #6485); its
  error value is symmetric and is used as is.

Labels may be any integer ids (uint64, huge, sparse): both volumes are
renumbered before the table is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import SegmentationDtypeError, SegmentNotFoundError, ShapeMismatchError


def variation_of_information(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(split, merge) variation of information in bits; truth label 0 is ignored."""
    from skimage.metrics import variation_of_information as skimage_voi

    truth, pred, table = _renumbered_table(truth, pred)
    split, merge = skimage_voi(truth, pred, table=table / table.sum())
    return float(split), float(merge)


def adapted_rand_error(truth: np.ndarray, pred: np.ndarray) -> float:
    """SNEMI3D adapted Rand error (0 is perfect, 1 is worst); truth label 0 is ignored."""
    from skimage.metrics import adapted_rand_error as skimage_are

    return float(skimage_are(table=contingency_table(truth, pred))[0])


def segmentation_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """All scores from one contingency table.

    Keys: ``adapted_rand_error``, ``rand_precision``, ``rand_recall``,
    ``voi_split``, ``voi_merge``, ``voi`` (their sum), ``truth_segments`` and
    ``pred_segments`` (segments over the voxels with a truth label).
    """
    from skimage.metrics import adapted_rand_error as skimage_are
    from skimage.metrics import variation_of_information as skimage_voi

    truth, pred, table = _renumbered_table(truth, pred)
    split, merge = (float(v) for v in skimage_voi(truth, pred, table=table / table.sum()))
    truth_sizes = np.asarray(table.sum(axis=1)).ravel()
    pred_sizes = np.asarray(table.sum(axis=0)).ravel()
    joint = _pairs(table.data)
    return {
        "adapted_rand_error": float(skimage_are(table=table)[0]),
        "rand_precision": _ratio(joint, _pairs(pred_sizes)),
        "rand_recall": _ratio(joint, _pairs(truth_sizes)),
        "voi_split": split,
        "voi_merge": merge,
        "voi": split + merge,
        "truth_segments": float(np.count_nonzero(truth_sizes)),
        "pred_segments": float(np.count_nonzero(pred_sizes)),
    }


def contingency_table(truth: np.ndarray, pred: np.ndarray) -> Any:
    """Voxel counts (a scipy csr_array) of truth × predicted segment overlaps, truth 0 left out.

    Rows and columns are the renumbered segments of ``truth`` (row 0: label 0,
    all zero) and ``pred``.
    """
    return _renumbered_table(truth, pred)[2]


def _renumbered_table(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """Both label volumes renumbered from 1 (0 kept) and their contingency table."""
    import fastremap
    from skimage.metrics import contingency_table as skimage_table

    truth, pred = np.asarray(truth), np.asarray(pred)
    for name, labels in (("truth", truth), ("pred", pred)):
        if not np.issubdtype(labels.dtype, np.integer):
            raise SegmentationDtypeError(
                f"{name}: segment labels must be integers, got dtype {labels.dtype}"
            )
    if truth.shape != pred.shape:
        raise ShapeMismatchError(
            f"truth and pred must have the same shape, got {truth.shape} and {pred.shape}"
        )
    if not truth.any():
        raise SegmentNotFoundError("truth: every voxel is 0 (unlabelled); nothing to score")
    # skimage indexes its table by label value: renumber so huge ids cost nothing
    truth = fastremap.renumber(truth, preserve_zero=True, in_place=False)[0]
    pred = fastremap.renumber(pred, preserve_zero=True, in_place=False)[0]
    table = skimage_table(truth, pred, ignore_labels=(0,), sparse_type="array")
    table.eliminate_zeros()
    return truth, pred, table


def _ratio(pairs: float, of: float) -> float:
    return pairs / of if of else 1.0  # no pairs to get wrong


def _pairs(sizes: np.ndarray) -> float:
    """Ordered pairs of distinct voxels within groups of the given sizes."""
    sizes = np.asarray(sizes, dtype=np.float64)
    return float(sizes @ sizes - sizes.sum())
