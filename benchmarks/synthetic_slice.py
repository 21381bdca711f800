"""Write docs/synthetic_slice.png: one z slice of the synthetic sample.

EM, segmentation (one colour per segment) and compartments (soma red, axon
blue, dendrite green, apical dendrite yellow, glia magenta) side by side::

    python benchmarks/synthetic_slice.py [--seed 0] [--out docs/synthetic_slice.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from napari_segclr.synthetic import sample_neuropil

#: Compartment colours: none, soma, axon, dendrite, apical dendrite, glia.
PALETTE = np.array(
    [[0, 0, 0], [230, 70, 70], [40, 150, 255], [60, 200, 60], [240, 220, 40], [200, 60, 230]],
    np.uint8,
)


def label_colours(labels: np.ndarray) -> np.ndarray:
    """A stable pseudo-random colour per id (0 black)."""
    h = labels.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(255) for s in (40, 48, 56)], axis=-1)
    rgb = (64 + rgb.astype(np.uint16) * 3 // 4).astype(np.uint8)
    rgb[labels == 0] = 0
    return rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic_slice.png"))
    args = parser.parse_args()
    neuropil = sample_neuropil(args.seed)
    z = neuropil.shape[0] // 2
    box = (slice(z, z + 1), slice(0, neuropil.shape[1]), slice(0, neuropil.shape[2]))
    crop = neuropil.render(box)
    em = np.repeat(crop.em[0][..., None], 3, axis=-1)
    panels = [em, label_colours(crop.segmentation[0]), PALETTE[crop.compartments[0]]]
    gap = np.full((em.shape[0], 6, 3), 255, np.uint8)
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    image = Image.fromarray(row).resize((row.shape[1] * 2, row.shape[0] * 2), Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + 22), "white")
    canvas.paste(image, (0, 22))
    draw = ImageDraw.Draw(canvas)
    width = (image.width - 24) // 3
    um = neuropil.shape[2] * neuropil.voxel_size[2] / 1000
    titles = [
        f"EM, {neuropil.voxel_size[2]:g} nm voxels, {um:.1f} um wide",
        "segmentation",
        "compartments: soma red, axon blue, dendrite green, apical yellow, glia magenta",
    ]
    for i, title in enumerate(titles):
        draw.text((i * (width + 12) + 4, 5), title, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
