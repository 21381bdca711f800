"""Embeddings on disk: a zarr store that many writers append to, keyed by segment and node.

``EmbeddingStore`` holds the embeddings of one model on one data set (its
signature) and never holds a node twice; ``EmbeddingTable`` is what it reads
and appends, as numpy columns.
"""

from .embedding_store import EmbeddingStore
from .table import EmbeddingTable

__all__ = ["EmbeddingStore", "EmbeddingTable"]
