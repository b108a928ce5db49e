"""The science of one chunk of a library: draw → project → noise → downsample.

Sample *i* of split *s* draws every random number from
``numpy.random.SeedSequence([recipe.seed, split_id, i])`` (split ids: train 0, val 1, test 2):
first its ground truth, then its noise, in the recipe's order. A library is therefore the
same, byte for byte, whatever the chunking, the number of workers or the storage format.
"""

from __future__ import annotations

import numpy as np

from tomobench import sources
from tomobench.errors import RecipeError
from tomobench.physics import noise
from tomobench.physics.geometry import from_recipe
from tomobench.physics.projector import get_projector
from tomobench.physics.resample import area_average, downsample
from tomobench.recipe import SPLIT_IDS, Recipe


def sample_rngs(recipe: Recipe, split: str, start: int, stop: int) -> list[np.random.Generator]:
    """One generator per sample, seeded by (recipe seed, split id, sample index)."""
    split_id = SPLIT_IDS[split]
    return [
        np.random.default_rng(np.random.SeedSequence([recipe.seed, split_id, index]))
        for index in range(start, stop)
    ]


def draw_samples(
    recipe: Recipe,
    split: str,
    start: int,
    rngs: list[np.random.Generator],
    materials: dict | None = None,
) -> dict[str, np.ndarray]:
    """Ground truth of samples ``start``, ``start + 1``, … of ``split`` (one per generator):
    ``images`` (n, H, W) or (n, H, W, C) float32 in [0, 1], and any other array the source
    makes beside them (phase maps, …). With ``geometry.oversample`` k > 1, ``images`` are
    rendered k× finer: their area averages over k × k blocks are the ground truth.
    ``materials``: what each sample draws from (:func:`tomobench.sources.inputs`), for a
    process without the source's cache."""
    draw = sources.sampler(recipe.source, split, recipe.geometry.oversample, materials)
    drawn = [draw(start + offset, rng) for offset, rng in enumerate(rngs)]
    if not isinstance(drawn[0], tuple):
        return {"images": np.stack(drawn)}
    images, extras = zip(*drawn)
    return {"images": np.stack(images)} | {
        name: np.stack([extra[name] for extra in extras]) for name in extras[0]
    }


def draw_images(
    recipe: Recipe, split: str, start: int, rngs: list[np.random.Generator]
) -> np.ndarray:
    """Only the ``images`` of :func:`draw_samples`."""
    return draw_samples(recipe, split, start, rngs)["images"]


def project(recipe: Recipe, images: np.ndarray, *, backend: str) -> np.ndarray:
    """Clean sinograms (n, A, D) float32 of a batch of ground-truth images (rendered
    ``geometry.oversample`` times finer), or (n, A, D, C) of hyperspectral cubes
    (n, H, W, C): every channel is projected, a cube at a time."""
    geometry = from_recipe(recipe)
    projector = get_projector(geometry, model=recipe.geometry.projector, backend=backend)
    if images.ndim == 3:
        return projector.forward(images)
    count, _, _, channels = images.shape
    sinograms = np.empty((count, *geometry.sinogram_shape, channels), dtype=np.float32)
    for cube, cube_sinograms in zip(images, sinograms):
        projector.forward_channels(cube, out=cube_sinograms)
    return sinograms


def corrupt(
    recipe: Recipe, sinograms: np.ndarray, rngs: list[np.random.Generator]
) -> np.ndarray:
    """The recipe's noise, in order, each sample drawing from its own generator."""
    out = sinograms.copy() if recipe.noise else sinograms
    for op in recipe.noise:
        for index, rng in enumerate(rngs):
            out[index] = noise.apply(op, out[index], recipe=recipe, rng=rng)
    if recipe.noise and not np.isfinite(out).all():
        kinds = ", ".join(op.kind for op in recipe.noise)
        msg = (
            f"recipe {recipe.name}: its noise ({kinds}) makes sinogram values too large for "
            "float32; lower its sigma or counts"
        )
        raise RecipeError(msg)
    return out


def make_chunk(
    recipe: Recipe,
    split: str,
    start: int,
    stop: int,
    *,
    backend: str,
    materials: dict | None = None,
) -> dict[str, np.ndarray]:
    """Every array of samples ``start:stop`` of ``split``, named as in the library.

    With ``geometry.oversample`` k > 1 the sinograms are of the image rendered k× finer
    and the ground truth is its area average, so the data's forward model is not the one a
    reconstruction on the ground truth's grid uses."""
    rngs = sample_rngs(recipe, split, start, stop)
    drawn = draw_samples(recipe, split, start, rngs, materials)
    rendered = drawn.pop("images")
    factor = recipe.geometry.oversample
    images = rendered if factor == 1 else area_average(rendered, factor).astype(np.float32)
    sinograms = corrupt(recipe, project(recipe, rendered, backend=backend), rngs)
    arrays = {"images": images, "sinograms": sinograms}
    for factor in recipe.downsample:
        arrays[f"images_x{factor}"] = downsample(images, factor)
    return arrays | drawn
