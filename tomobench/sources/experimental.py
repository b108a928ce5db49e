"""Ground truth reconstructed from measured sinograms (micro-CT, or XRD-CT stacks).

As the 2020 project did (report §6.1), each measured sinogram is, in this order: freed of its
background (air) estimated from the outermost detector pixels, scaled so every projection has
the same summed intensity, centred on the rotation axis (the centre of mass of the
projections fitted to a sinusoid), reconstructed by filtered backprojection, its negative
values set to zero, and normalised to a maximum of 1. These images are the ground truth;
new sinograms are simulated from them like for any source.

An XRD-CT stack (``axes`` with a channel axis C) gives ground-truth cubes: every channel goes
through the same steps, with one per-angle scale and one centre for all channels and one
maximum for the whole cube; the library is then hyperspectral.

:func:`prepare` does this once per slice and caches the images; sample *i* of a split then
takes slice ``i mod n`` of that split's slices, a random square crop (``crop`` pixels, or the
whole image), a random quarter turn and flip when ``augment`` is on, and a bilinear,
anti-aliased resize to ``size``. Splits name disjoint slices, so none leaks into another.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
from skimage.transform import resize

from tomobench._atomic import atomic_path
from tomobench.errors import RecipeError, StoreError


def prepare(source) -> None:
    """Preprocess and reconstruct every slice the source names; cache the images."""
    _data_file(source, download=True)
    cache = _cache_file(source)
    if cache.exists():
        return
    images = {}
    for split, items in source.slices.items():
        for item in items:
            stack = _read(source, item)
            images[_item_key(split, item)] = np.stack(
                [_ground_truth(source, sinogram) for sinogram in stack]
            )
    with atomic_path(cache, error=StoreError) as temporary:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(temporary, **images)


def check_counts(source, splits: dict[str, int]) -> None:
    for split, count in splits.items():
        if count and not source.slices.get(split):
            msg = f"split {split!r} asks for {count} samples but source.slices names none for it"
            raise RecipeError(msg)


def inputs(source, split: str, start: int, stop: int) -> dict[int, tuple]:
    """Sample index → (split, slice number) of the slice it is cut from."""
    count = len(_split_images(source, split))
    return {index: (split, index % count) for index in range(start, stop)}


def load_input(source, key: tuple) -> np.ndarray:
    split, number = key
    return _split_images(source, split)[number]


def sampler(source, split: str, materials: dict | None = None):
    images = None if materials is not None else _split_images(source, split)

    def draw(index: int, rng: np.random.Generator) -> np.ndarray:
        image = materials[index] if images is None else images[index % len(images)]
        side = image.shape[0] if source.crop is None else min(source.crop, image.shape[0])
        top = int(rng.integers(0, image.shape[0] - side + 1))
        left = int(rng.integers(0, image.shape[1] - side + 1))
        square = image[top : top + side, left : left + side]
        if source.augment:
            square = np.rot90(square, int(rng.integers(4)))
            if rng.integers(2):
                square = square[:, ::-1]
        shape = (source.size, source.size, *square.shape[2:])
        out = resize(square, shape, order=1, anti_aliasing=side > source.size)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    return draw


def _ground_truth(source, sinogram: np.ndarray) -> np.ndarray:
    """One measured sinogram (A, D) → its normalised FBP reconstruction (D, D); an XRD-CT
    sinogram (A, D, C) → a cube (D, D, C), every channel through the same steps (one
    per-angle scale and one centre for all channels; one maximum for the whole cube)."""
    from tomobench.physics import preprocess
    from tomobench.physics.geometry import parallel_beam
    from tomobench.physics.projector import Projector

    sinogram = np.asarray(sinogram, dtype=np.float64)
    if source.background_edge:
        sinogram = preprocess.subtract_background(sinogram, edge=source.background_edge)
    if source.scale:
        sinogram = preprocess.scale_projections(sinogram)
    angles, detector = sinogram.shape[:2]
    geometry = parallel_beam(detector, angles=angles, arc=np.deg2rad(source.angle_range))
    if source.center:
        sinogram, _ = preprocess.center_sinogram(sinogram, angles=geometry.angle_values)
    projector = Projector(geometry, backend="astra-cpu")
    if sinogram.ndim == 2:
        return preprocess.normalise(projector.fbp(sinogram, filter=source.filter))
    planes = projector.fbp(np.moveaxis(sinogram, 2, 0), filter=source.filter)
    return preprocess.normalise(np.moveaxis(planes, 0, 2))


def _read(source, item: str) -> np.ndarray:
    """The sinograms an item names, as (S, A, D)."""
    path = _data_file(source)
    suffix = path.suffix.lower()
    try:
        if suffix in (".h5", ".hdf5", ".nxs"):
            import h5py

            with h5py.File(path, "r") as file:
                if item not in file:
                    raise KeyError(item)
                array = file[item][...]
        elif suffix == ".npz":
            with np.load(path) as archive:
                array = archive[item]
        elif suffix == ".npy":
            array = _select(np.load(path), item)
        elif suffix in (".tif", ".tiff"):
            import imageio.v3 as iio

            array = _select(iio.imread(path), item)
        else:
            msg = f"{path}: unsupported sinogram file (use .h5, .npz, .npy or .tif)"
            raise RecipeError(msg)
    except KeyError:
        msg = f"{path} has no sinogram {item!r}"
        raise RecipeError(msg) from None
    except (OSError, ValueError) as error:
        msg = f"{path}: cannot read sinograms: {error}"
        raise RecipeError(msg) from None
    if array.ndim != len(source.axes):
        msg = (
            f"{path}: sinogram {item!r} has rank {array.ndim} (shape {array.shape}) but "
            f"source.axes {source.axes!r} needs rank {len(source.axes)}"
        )
        raise RecipeError(msg)
    order = "".join(axis for axis in "SADC" if axis in source.axes)
    array = np.transpose(array, [source.axes.index(axis) for axis in order])
    if "C" in source.axes and array.shape[-1] != source.channels:
        msg = (
            f"{path}: sinogram {item!r} has {array.shape[-1]} channels, "
            f"the recipe says {source.channels}"
        )
        raise RecipeError(msg)
    return array if "S" in source.axes else array[None]


def _select(array: np.ndarray, item: str) -> np.ndarray:
    """``"all"`` or a slice range ``"start:stop"`` of a single-array file (first axis)."""
    if item == "all":
        return array
    try:
        start, stop = (int(part) for part in item.split(":"))
    except ValueError:
        msg = f"slice item {item!r} must be 'all' or 'start:stop' for a single-array file"
        raise RecipeError(msg) from None
    if not 0 <= start < stop <= len(array):
        msg = (
            f"slice item {item!r} must lie within the file's {len(array)} sinograms "
            "(0 <= start < stop)"
        )
        raise RecipeError(msg)
    return array[start:stop]


def _data_file(source, *, download: bool = False) -> Path:
    """The sinogram file: a local path, or a registry entry (fetched only by ``prepare``:
    workers look it up in the cache without re-hashing it)."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not path.exists():
            msg = f"sinogram file {path} not found"
            raise RecipeError(msg)
        return path
    from tomobench.datasets import fetch, path_of

    path = fetch(source.dataset, progress=True) if download else path_of(source.dataset)
    if path is None:
        msg = f"dataset {source.dataset!r} is not in the cache: run `tomobench fetch`"
        raise RecipeError(msg)
    return Path(path)


def _cache_file(source) -> Path:
    """Where the preprocessed ground truth of ``source`` is kept: keyed by every field that
    changes it, and by the data file's identity."""
    from tomobench.datasets import cache_dir

    data = _data_file(source)
    stat = data.stat()
    fields = source.model_dump(mode="json", exclude={"size", "crop", "augment"})
    key = json.dumps([fields, str(data.resolve()), stat.st_size, stat.st_mtime_ns])
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir() / "experimental" / f"{digest}.npz"


def _item_key(split: str, item: str) -> str:
    return f"{split}--{item}".replace("/", "__")


def _split_images(source, split: str) -> list[np.ndarray]:
    return _load(str(_cache_file(source)), split, tuple(source.slices.get(split, ())))


@functools.lru_cache(maxsize=4)
def _load(cache: str, split: str, items: tuple[str, ...]) -> list[np.ndarray]:
    if not Path(cache).exists():
        msg = "the experimental ground truth is not prepared: build the recipe again"
        raise RecipeError(msg)
    with np.load(cache) as archive:
        return [image for item in items for image in archive[_item_key(split, item)]]
