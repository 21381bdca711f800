"""napari-segclr: SegCLR embeddings and MAE segmentation for 3D EM connectomics.

The core library (``io``, ``synthetic``, …) imports neither napari nor Qt, so it
runs headless in a notebook or a cluster job; ``widgets`` and ``cli`` sit on top.
"""

__version__ = "0.1.0"
