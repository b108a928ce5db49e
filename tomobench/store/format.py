"""The on-disk library format (version 2), stated once for HDF5 and Zarr alike.

One library is one HDF5 file or one Zarr group holding the same tree:

- root attrs: ``tomobench_format``, ``tomobench_version``, ``recipe`` (JSON text),
  ``recipe_sha256``, ``task``, ``backend`` and ``identity`` (JSON text: each split's
  projector backend, each split's identity digest) and ``complete``;
- ``/angles`` (A,) float64, radians, endpoint excluded;
- ``/{split}/images`` (N, H, W) float32 in [0, 1];
- ``/{split}/sinograms`` (N, A, D) float32, angle axis first;
- ``/{split}/images_x{s}`` (N, H/s, W/s) float32, bilinear downsampled ground truth.

A hyperspectral library adds a channel axis last to these arrays ((N, H, W, C) and
(N, A, D, C)), its spectral axis at the root (``/two_theta``, degrees) and the arrays of
ground truth its source made (phase fractions, crystallite size, strain, …, and with
``source.absorption`` the absorption image of each slice).

Samples lie on axis 0, chunked along it (``output.chunk`` samples a chunk), each chunk
checksummed (Fletcher-32 in HDF5, zstd's content checksum in Zarr). While a build runs, the
library lives at ``PATH.partial`` with a ``_build/{split}`` array of chunk flags; it is
renamed to ``PATH`` only when every chunk is written (:mod:`tomobench.partial`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FORMAT_VERSION = 2
PARTIAL_SUFFIX = ".partial"
BUILD_GROUP = "_build"
SUFFIXES = {".h5": "hdf5", ".hdf5": "hdf5", ".zarr": "zarr"}
CHANNEL_CHUNK = 64
"""Channels per storage chunk of a hyperspectral array."""


@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str = "float32"


def array_specs(recipe, count: int) -> list[ArraySpec]:
    """The arrays of one split of ``count`` samples, in the order they are written.

    Samples are chunked ``output.chunk`` at a time; a hyperspectral library instead stores
    one sample per chunk, its channels in ranges of :data:`CHANNEL_CHUNK`, so that a sample
    or a channel range reads without the rest.
    """
    from tomobench.sources import sample_shapes

    size, angles, detector = recipe.image_size, recipe.geometry.angles, recipe.detector_count
    spectral = () if recipe.channels is None else (recipe.channels,)
    shapes = {"images": (size, size, *spectral), "sinograms": (angles, detector, *spectral)}
    for factor in recipe.downsample:
        shapes[f"images_x{factor}"] = (size // factor, size // factor, *spectral)
    if not spectral:
        per_chunk = max(1, min(recipe.output.chunk, count))
        return [
            ArraySpec(name, (count, *shape), (per_chunk, *shape))
            for name, shape in shapes.items()
        ]
    specs = [
        ArraySpec(name, (count, *shape), (1, *shape[:-1], min(shape[-1], CHANNEL_CHUNK)))
        for name, shape in shapes.items()
    ]
    specs += [
        ArraySpec(name, (count, *shape), (1, *shape))
        for name, shape in sample_shapes(recipe.source).items()
    ]
    return specs


def chunk_count(count: int, chunk: int) -> int:
    return -(-count // chunk)


def chunk_bounds(count: int, chunk: int, index: int) -> tuple[int, int]:
    start = index * chunk
    return start, min(start + chunk, count)


def format_of(path: Path) -> str | None:
    """The format a library path's suffix names (``None`` for an unknown suffix)."""
    name = path.name.removesuffix(PARTIAL_SUFFIX)
    return SUFFIXES.get(Path(name).suffix.lower())


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)

