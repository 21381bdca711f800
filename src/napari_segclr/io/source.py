"""Where a volume lives: a file or store, plus a dataset path inside it.

The forms a user may write::

    volume.tif                        a file
    volume.h5:/group/raw              a dataset inside an HDF5 file
    volume.h5/group/raw               the same, without the colon
    store.zarr, store.zarr/raw        a Zarr array or OME-Zarr image
    store.zarr:raw                    the same, with the colon
    container.n5/raw                  an N5 dataset
    precomputed://file:///abs/vol     neuroglancer precomputed (``:key`` picks a scale)
    precomputed://https://host/vol    the same, served over HTTP(S) or from gs:// / s3://
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import VolumeNotFoundError

PRECOMPUTED = "precomputed://"
_CONTAINER_SUFFIXES = (".zarr", ".n5")


@dataclass(frozen=True)
class Source:
    """A parsed volume location.

    ``spec`` is what the user wrote (used in every message), ``location`` the
    local file or directory (or, when ``is_url``, a remote store URL),
    ``inner`` the dataset path or scale key inside it ("" for none), and
    ``scheme`` a format forced by the spec's prefix ("precomputed") or None.
    """

    spec: str
    location: str
    inner: str = ""
    is_url: bool = False
    scheme: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def name(self) -> str:
        """A short display name: the file name without suffix, plus the inner path."""
        base = self.location.rstrip("/").rsplit("/", 1)[-1]
        for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif"):
            base = base.removesuffix(suffix)
        stem = base.rsplit(".", 1)[0] if "." in base else base
        return f"{stem}/{self.inner}" if self.inner else stem


def parse_source(spec: str | os.PathLike[str]) -> Source:
    """Split a volume spec into its file or store and the dataset path inside.

    Raises ``VolumeNotFoundError`` when no part of a local path exists.
    """
    text = os.fspath(spec)
    if text.startswith(PRECOMPUTED):
        rest = text[len(PRECOMPUTED) :]
        if rest.startswith("file://"):
            return _parse_local(text, rest[len("file://") :], scheme="precomputed")
        location, key = _split_key(rest)
        return Source(text, location.rstrip("/") + "/", key, is_url=True, scheme="precomputed")
    return _parse_local(text, text, scheme=None)


def _parse_local(spec: str, text: str, scheme: str | None) -> Source:
    path = Path(text).expanduser()
    if path.exists():
        return Source(spec, str(path), "", scheme=scheme)
    head, colon, tail = text.rpartition(":")
    if colon and head and Path(head).expanduser().exists():
        return Source(spec, str(Path(head).expanduser()), tail.strip("/"), scheme=scheme)
    # "file.h5/group/raw" or "store.zarr/missing": the container exists, the
    # rest names something inside it (or nothing, which the format reports).
    for parent in path.parents:
        if parent.is_file() or (parent.is_dir() and _is_container(parent)):
            inner = path.relative_to(parent).as_posix()
            return Source(spec, str(parent), inner, scheme=scheme)
        if parent.exists():
            break
    raise VolumeNotFoundError(f"{spec}: no such file or directory")


def _is_container(path: Path) -> bool:
    return path.suffix.lower() in _CONTAINER_SUFFIXES or any(
        (path / marker).is_file() for marker in ("zarr.json", ".zgroup", "attributes.json", "info")
    )


def _split_key(url: str) -> tuple[str, str]:
    """Split a trailing ``:key`` (no slash after it) off a URL; keep ``host:port/...``."""
    head, colon, tail = url.rpartition(":")
    if colon and tail and "/" not in tail and "://" in head:
        return head, tail
    return url, ""
