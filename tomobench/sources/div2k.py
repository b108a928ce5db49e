"""DIV2K natural images (Agustsson & Timofte, NTIRE 2017) as ground truth.

DIV2K's 800 training images feed the train and val splits (the last ``val_images`` of them
go to val) and its 100 validation images feed test, so no image appears in two splits.
Sample *i* of a split comes from image ``i // crops_per_image`` of that split's images: a
square of ``crop`` pixels at a position drawn from the sample's generator (or the central
square of the whole image when ``crop`` is null), turned to grey with
``skimage.color.rgb2gray`` (ITU-R BT.709 luma: 0.2125 R + 0.7154 G + 0.0721 B), and resized
bilinearly, with anti-aliasing, to ``size`` × ``size``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.color import rgb2gray
from skimage.transform import resize

from tomobench.errors import RecipeError


def prepare(source) -> None:
    """Fetch (download, check, unpack) both DIV2K archives into the cache."""
    from tomobench.datasets import fetch, path_of

    for name in (source.train_dataset, source.test_dataset):
        if path_of(name) is None:
            fetch(name, progress=True)


def check_counts(source, splits: dict[str, int]) -> None:
    for split, count in splits.items():
        files = split_files(source, split)
        available = len(files) * source.crops_per_image
        if count > available:
            msg = (
                f"split {split!r} asks for {count} samples but DIV2K gives it {len(files)} "
                f"images × {source.crops_per_image} crops = {available}"
            )
            raise RecipeError(msg)


def inputs(source, split: str, start: int, stop: int) -> dict[int, tuple]:
    """Sample index → (split, number of the image it is cut from)."""
    return {index: (split, index // source.crops_per_image) for index in range(start, stop)}


def load_input(source, key: tuple) -> tuple[str, bytes]:
    """The name and PNG bytes of an image."""
    split, number = key
    path = split_files(source, split)[number]
    return path.name, path.read_bytes()


def sampler(source, split: str, materials: dict | None = None):
    files = None if materials is not None else split_files(source, split)

    def draw(index: int, rng: np.random.Generator) -> np.ndarray:
        if files is None:
            name, data = materials[index]
            image = _grey(data)
        else:
            path = files[index // source.crops_per_image]
            name, image = path.name, _grey(path)
        height, width = image.shape
        side = min(height, width) if source.crop is None else source.crop
        if side > min(height, width):
            msg = f"crop {side} is larger than {name}"
            raise RecipeError(msg)
        if source.crop is None:
            top, left = (height - side) // 2, (width - side) // 2
        else:
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
        square = image[top : top + side, left : left + side]
        out = resize(square, (source.size, source.size), order=1, anti_aliasing=side > source.size)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    return draw


def split_files(source, split: str) -> list[Path]:
    """The images a split draws from, in a fixed (sorted) order."""
    if split == "test":
        return _images(source.test_dataset)
    train = _images(source.train_dataset)
    if not 0 <= source.val_images < len(train):
        msg = f"val_images {source.val_images} must be below the {len(train)} training images"
        raise RecipeError(msg)
    cut = len(train) - source.val_images
    return train[:cut] if split == "train" else train[cut:]


def _images(name: str) -> list[Path]:
    from tomobench.datasets import path_of

    folder = path_of(name)
    if folder is None:
        msg = f"dataset {name!r} is not in the cache: run `tomobench fetch {name}`"
        raise RecipeError(msg)
    files = _png_files(str(folder))
    if not files:
        msg = f"dataset {name!r} ({folder}) holds no PNG image"
        raise RecipeError(msg)
    return files


@functools.cache
def _png_files(folder: str) -> list[Path]:
    """The PNG images under an unpacked dataset's folder (which never changes), sorted by
    name."""
    return sorted(Path(folder).rglob("*.png"), key=lambda path: path.name)


@functools.lru_cache(maxsize=2)
def _grey(png: Path | bytes) -> np.ndarray:
    """A PNG (its path or bytes) as float64 grey values in [0, 1] (consecutive samples
    reuse one image)."""
    image = iio.imread(png, extension=".png")
    if image.ndim == 3:
        image = rgb2gray(image[..., :3])
        return image
    return image.astype(np.float64) / np.iinfo(image.dtype).max
