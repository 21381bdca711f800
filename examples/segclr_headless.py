"""SegCLR end to end without napari: volume → encoder → embeddings → heads → predictions → report.

Adapt it to your data: replace ``synthetic_volume`` by ``open_dataset(em, seg)`` and the
cell-type table by your own labels (segment id → class).

    python examples/segclr_headless.py --out segclr_run                    # tiny model, trains
    python examples/segclr_headless.py --out segclr_run --model model.pt   # your encoder

It writes into ``--out``: the encoder (when trained here), the embedding store,
``cell_types.csv`` (one row per segment: class probabilities, uncertainty, rejected)
and, with ``--report``, the evaluation report (``report/report.json`` + figures).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from napari_segclr.aggregate import aggregate_embeddings
from napari_segclr.embed import embed_segments
from napari_segclr.evaluate import EvaluationConfig, run_evaluation
from napari_segclr.heads import combine_segments, fit_head
from napari_segclr.model import load_checkpoint
from napari_segclr.store import EmbeddingStore
from napari_segclr.synthetic import Neuropil, NeuropilConfig
from napari_segclr.train import TrainConfig, TrainingData, train

SPACING_NM = 500.0


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    # 1. A volume with its segmentation, skeletons and the true cell type of each segment.
    config = NeuropilConfig(shape=(64, 160, 160), voxel_size=64.0, seed=args.seed)
    data = TrainingData.synthetic(config)
    cells = Neuropil(config).cell_table()
    pairs = zip(cells.segment_ids, cells.cell_type, strict=True)
    cell_type = {int(s): kind for ids, kind in pairs for s in ids}

    # 2. An encoder: yours, or one trained here without labels (contrastive).
    if args.model is not None:
        model, _ = load_checkpoint(args.model)
    else:
        settings = TrainConfig(model=args.preset, steps=args.steps, batch_size=16)
        model = train([data], settings, checkpoint=args.out / "encoder.pt").model

    # 3. Embeddings: one per skeleton node, every SPACING_NM along each segment.
    segments = {s: k for s, k in data.skeletons.items() if s in cell_type}
    store_path = args.out / "embeddings.zarr"
    embed_segments(data.dataset, model, store_path, skeletons=segments, spacing_nm=SPACING_NM)
    table = EmbeddingStore.open(store_path).read()

    # 4. Cell types: embeddings averaged over 5 µm along each segment, an SNGP head fitted
    #    on every other segment, with a reject threshold keeping 90 % of held-out nodes.
    table = aggregate_embeddings(table, radius_um=5.0, spacing_nm=SPACING_NM)
    labels = np.array([cell_type[int(s)] for s in table.segment_id])
    ids = np.unique(table.segment_id)
    train_ids, test_ids = ids[::2], ids[1::2]
    in_train = np.isin(table.segment_id, train_ids)
    in_test = np.isin(table.segment_id, test_ids)
    fit = np.isin(table.segment_id, train_ids[::2])  # the rest of train_ids calibrates
    names, counts = np.unique(labels[fit], return_counts=True)
    usable = fit & np.isin(labels, names[counts >= 2])  # a class needs two examples
    head = fit_head(table.embedding[usable], labels[usable], kind="sngp").calibrate_reject(
        table.embedding[in_train & ~fit], coverage=0.9
    )

    # 5. Predictions per segment with their uncertainty.
    prediction = combine_segments(head.predict(table.embedding[in_test]), table.segment_id[in_test])
    frame = prediction.to_frame()
    frame["true_cell_type"] = [cell_type[int(s)] for s in prediction.segment_id]
    frame.to_csv(args.out / "cell_types.csv", index=False)
    known = np.isin(frame["true_cell_type"], head.classes)
    f1 = f1_score(frame["true_cell_type"][known], prediction.labels[known], average="macro")
    print(
        f"{len(ids)} segments, {len(table)} nodes; head on {len(train_ids[::2])} segments "
        f"({', '.join(head.classes)}); cell-type macro F1 on {int(known.sum())} test segments "
        f"of known types: {f1:.2f}; rejected as unfamiliar: {int(prediction.rejected.sum())} "
        f"of {len(frame)} → {args.out / 'cell_types.csv'}"
    )

    # 6. The evaluation report on synthetic seeds the encoder never saw.
    if args.report:
        run_evaluation(
            model, args.out / "report", EvaluationConfig.quick(), model_name="example", force=True
        )
        print(f"report → {args.out / 'report' / 'report.json'}")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for everything written")
    p.add_argument("--model", type=Path, help="a SegCLR checkpoint (default: train one here)")
    p.add_argument("--preset", default="tiny", help="preset trained here (default tiny)")
    p.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    p.add_argument("--seed", type=int, default=7, help="synthetic volume seed (default 7)")
    p.add_argument("--report", action="store_true", help="also write the evaluation report")
    return p.parse_args()


if __name__ == "__main__":
    main()
