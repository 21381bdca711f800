"""Errors a user can act on.

Every error here carries a one-line message that names the problem and, where
there is one, the file. The command line prints the message alone; the napari
widgets show it in the notification area. Each subclasses the built-in error a
Python user would catch for the same mistake.
"""

from __future__ import annotations


class SegclrError(Exception):
    """Base class: a problem with the user's input, not a bug."""


class VolumeNotFoundError(SegclrError, FileNotFoundError):
    """The path (or the dataset inside a container) does not exist."""


class UnknownFormatError(SegclrError, ValueError):
    """The path exists but is no volume format we can open."""


class DatasetNotFoundError(SegclrError, KeyError):
    """The container exists but holds no dataset under the given name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VoxelSizeError(SegclrError, ValueError):
    """The voxel size is missing, malformed or not positive."""


class SegmentationDtypeError(SegclrError, TypeError):
    """A segmentation must hold integer segment ids."""


class ShapeMismatchError(SegclrError, ValueError):
    """Two volumes that must cover each other do not, or a crop is out of bounds."""


class MorphologyFormatError(SegclrError, ValueError):
    """A skeleton (SWC, node table) or surface mesh (OBJ) file is malformed."""


class CheckpointError(SegclrError, ValueError):
    """A model checkpoint is missing, is not ours, or does not match its stored config."""


class SegmentNotFoundError(SegclrError, KeyError):
    """The segment id is background (0) or absent where it was looked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SegmentTooSmallError(SegclrError, ValueError):
    """The segment is too small to skeletonise."""


class OutputExistsError(SegclrError, FileExistsError):
    """The output path exists and overwriting it was not asked for, or is unsafe."""


class StoreSignatureError(SegclrError, ValueError):
    """An embedding store was made by another model or from other data than asked."""


class LabelError(SegclrError, ValueError):
    """Labels cannot train a classifier: too few classes or examples, or unknown class names."""


class EmbeddingError(SegclrError, ValueError):
    """Embeddings hold values that are not finite numbers (NaN, infinity, text)."""
