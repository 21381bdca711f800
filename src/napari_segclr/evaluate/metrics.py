"""Scores of an evaluation: learning curves, label multiples, F1 and out-of-distribution AUROC.

Everything here takes plain arrays (embeddings, class names, scores) and
returns JSON-able dicts, so it works on any method's predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score, roc_curve

from ..heads import HEAD_KINDS, fit_head

#: Fit on the training rows at ``index`` with ``seed``; return the test rows' predicted classes.
FitPredict = Callable[[np.ndarray, int], np.ndarray]
Progress = Callable[[int, int], None]
#: Points kept of a ROC curve in a report.
ROC_POINTS = 101


def classification_scores(
    truth: np.ndarray, predicted: np.ndarray, *, classes: Sequence[str]
) -> dict:
    """Macro F1 (over the classes present in ``truth``), accuracy, F1 per class, confusion.

    Classes absent from ``truth`` get ``None`` as F1; the confusion matrix
    (rows: true, columns: predicted) has a row and a column for every class.
    """
    truth, predicted = np.asarray(truth).astype(str), np.asarray(predicted).astype(str)
    present = [c for c in classes if np.any(truth == c)]
    per_class = f1_score(truth, predicted, labels=present, average=None, zero_division=0)
    scores = dict(zip(present, per_class.tolist(), strict=True))
    return {
        "macro_f1": round(float(np.mean(per_class)), 4) if present else None,
        "accuracy": round(float(np.mean(truth == predicted)), 4) if len(truth) else None,
        "per_class_f1": {c: None if c not in scores else round(scores[c], 4) for c in classes},
        "confusion": confusion_matrix(truth, predicted, labels=list(classes)).tolist(),
    }


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """F1 averaged over the classes present in ``truth``."""
    truth, predicted = np.asarray(truth).astype(str), np.asarray(predicted).astype(str)
    present = np.unique(truth)
    return float(np.mean(f1_score(truth, predicted, labels=present, average=None, zero_division=0)))


def stratified_draw(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of up to ``per_class`` rows of every class, drawn without replacement."""
    labels = np.asarray(labels)
    picks = [
        rng.choice(rows, size=min(per_class, len(rows)), replace=False)
        for rows in (np.flatnonzero(labels == c) for c in np.unique(labels))
    ]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def learning_curve(
    fit_predict: FitPredict,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    *,
    labels_per_class: Sequence[int],
    draws: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict:
    """Macro F1 on the test rows against the number of labelled training rows.

    For each count ``k`` of ``labels_per_class``, ``draws`` random class-balanced
    subsets of ``k`` rows per class (all rows of a class with fewer) are
    fitted and scored; a count that takes every row is drawn once (all its
    draws would be the same). Returns ``labels`` (labelled rows per count),
    ``labels_per_class``, ``f1`` (per count, the F1 of each draw), ``median``,
    ``min``, ``max``, and ``predicted`` (test predictions of the last draw of
    the largest count, for a confusion matrix; not JSON).
    """
    train_labels = np.asarray(train_labels).astype(str)
    largest = int(np.unique(train_labels, return_counts=True)[1].max())
    counts = sorted({min(int(k), largest) for k in labels_per_class})
    rng = np.random.default_rng(seed)
    plan = [(k, 1 if k == largest else draws) for k in counts]
    total, done = sum(n for _, n in plan), 0
    result: dict = {"labels": [], "labels_per_class": counts, "f1": []}
    predicted = np.zeros(0)
    for k, n_draws in plan:
        scores = []
        for draw in range(n_draws):
            index = stratified_draw(train_labels, k, rng)
            predicted = np.asarray(fit_predict(index, seed + draw))
            scores.append(round(macro_f1(test_labels, predicted), 4))
            done += 1
            if progress is not None:
                progress(done, total)
        result["labels"].append(len(index))
        result["f1"].append(scores)
    result["median"] = [round(float(np.median(s)), 4) for s in result["f1"]]
    result["min"] = [min(s) for s in result["f1"]]
    result["max"] = [max(s) for s in result["f1"]]
    result["predicted"] = predicted
    return result


def label_multiple(segclr: dict, supervised: dict) -> dict:
    """How many times fewer labels ``segclr`` needs to match ``supervised``'s best F1.

    Both are :func:`learning_curve` results. The supervised curve's best
    median F1 is first reached with ``supervised_labels``; the SegCLR curve's
    median first reaches it with ``segclr_labels``. When that already happens
    at SegCLR's smallest count, the multiple is only a lower bound
    (``lower_bound`` True); when it never happens, ``value`` is None.
    """
    best = max(supervised["median"])
    at = supervised["median"].index(best)
    n_supervised = supervised["labels"][at]
    reached = [i for i, f1 in enumerate(segclr["median"]) if f1 >= best]
    out = {
        "supervised_best_f1": best,
        "supervised_labels": n_supervised,
        "segclr_labels": None,
        "value": None,
        "lower_bound": False,
        "most_measurable": round(n_supervised / segclr["labels"][0], 2),
    }
    if reached:
        n_segclr = segclr["labels"][reached[0]]
        out.update(
            segclr_labels=n_segclr,
            value=round(n_supervised / n_segclr, 2),
            lower_bound=reached[0] == 0,
        )
    return out


def ood_auroc(is_out: np.ndarray, score: np.ndarray) -> dict:
    """AUROC of ``score`` (larger: more likely out of distribution) and its ROC curve.

    The curve keeps :data:`ROC_POINTS` points at evenly spaced false-positive
    rates. NaN scores (e.g. a variance that a head does not have) give None.
    """
    is_out = np.asarray(is_out, bool)
    score = np.asarray(score, float)
    if not np.isfinite(score).all() or is_out.all() or not is_out.any():
        return {"auroc": None, "fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(is_out, score)
    grid = np.linspace(0, 1, ROC_POINTS)
    return {
        "auroc": round(float(roc_auc_score(is_out, score)), 4),
        "fpr": grid.round(3).tolist(),
        "tpr": np.interp(grid, fpr, tpr).round(4).tolist(),
    }


def ood_scores(
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    test_embeddings: np.ndarray,
    test_labels: np.ndarray,
    *,
    kinds: Sequence[str] = HEAD_KINDS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """How well each kind of head's uncertainty tells unknown classes from known ones.

    A head of each kind is fitted on the training rows (their classes are the
    known ones); test rows of other classes are out of distribution. For each
    head: its accuracy on the known test rows, and the AUROC and ROC curve
    (:func:`ood_auroc`) of its Dempster-Shafer uncertainty, of
    1 - confidence and of the GP variance (SNGP only; None for the others).
    Returns ``n_in``, ``n_out`` and ``heads`` (by kind).
    """
    train_labels = np.asarray(train_labels).astype(str)
    test_labels = np.asarray(test_labels).astype(str)
    known = np.isin(test_labels, np.unique(train_labels))
    out: dict[str, Any] = {"n_in": int(known.sum()), "n_out": int((~known).sum()), "heads": {}}
    for done, kind in enumerate(kinds, start=1):
        head = fit_head(train_embeddings, train_labels, kind=kind, seed=seed)
        pred = head.predict(test_embeddings)
        # Entropy is left out: it ranks inputs much as 1 - confidence does (alike for 2 classes).
        scores = {
            "dempster_shafer": pred.dempster_shafer,
            "one_minus_confidence": 1 - pred.confidence,
            "variance": pred.variance,
        }
        out["heads"][kind] = {
            "known_accuracy": round(float(np.mean(pred.labels[known] == test_labels[known])), 4),
            "scores": {name: ood_auroc(~known, value) for name, value in scores.items()},
        }
        if progress is not None:
            progress(done, len(kinds))
    return out
