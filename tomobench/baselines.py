"""Classical reconstructions, the yardsticks every learned method is scored beside.

Each algorithm is a plain function of sinograms and a geometry; :func:`run` applies one to a
split of a library with the library's own geometry. Reconstructions are made on the image
grid (``oversample`` 1) whatever grid the library's data were simulated on.

- :func:`fbp`: ASTRA's filtered backprojection, filters ram-lak, shepp-logan, cosine, hamming,
  hann.
- :func:`sirt`: x ← x + C Aᵀ R (y − A x), with R and C the inverse row and column sums of
  the system matrix A (ASTRA's SIRT), for a whole batch of sinograms at once.
- :func:`cgls`: conjugate gradients on the normal equations (ASTRA's CGLS), batched.
- :func:`ganrec`: GANrec (Yang et al. 2020), a generative adversarial network fitted to each
  sinogram on its own through the projector (:mod:`tomobench.models.ganrec`; needs the
  ``models`` extra).

``nonnegative`` clips negative values (after every SIRT iteration; at the end for FBP, CGLS
and GANrec, whose iterations it would break) and ``mask`` restricts the image to the circle
inscribed in it (GANrec: while fitting).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import numpy as np

from tomobench.errors import RecipeError, StoreError
from tomobench.physics.geometry import ParallelGeometry, circular_mask, from_recipe
from tomobench.physics.projector import FBP_FILTERS, get_projector, resolve_backend

METHODS = ("fbp", "sirt", "cgls", "ganrec")
__all__ = ["FBP_FILTERS", "METHODS", "cgls", "fbp", "ganrec", "run", "sirt"]


def _projector(geometry: ParallelGeometry, model: str, backend: str):
    return get_projector(dataclasses.replace(geometry, oversample=1), model=model, backend=backend)


def _finish(images: np.ndarray, *, nonnegative: bool, mask: bool) -> np.ndarray:
    if nonnegative:
        np.maximum(images, 0, out=images)
    if mask:
        images *= circular_mask(images.shape[-1])
    return images


def fbp(
    sinograms: np.ndarray,
    geometry: ParallelGeometry,
    *,
    filter: str = "ram-lak",
    model: str = "linear",
    backend: str = "auto",
    nonnegative: bool = False,
    mask: bool = False,
) -> np.ndarray:
    """Filtered backprojection of (A, D) or (B, A, D) sinograms, float32."""
    images = _projector(geometry, model, backend).fbp(sinograms, filter=filter)
    return _finish(images, nonnegative=nonnegative, mask=mask)


def sirt(
    sinograms: np.ndarray,
    geometry: ParallelGeometry,
    *,
    iterations: int = 100,
    model: str = "linear",
    backend: str = "matrix",
    nonnegative: bool = False,
    mask: bool = False,
) -> np.ndarray:
    """SIRT from a zero start, ``iterations`` iterations, on a batch at once."""
    projector = _projector(geometry, model, backend)
    sinograms, single = _batch(sinograms)
    support = _support(geometry, mask)
    rows = projector.forward(support)
    columns = projector.backward(np.ones(geometry.sinogram_shape, dtype=np.float32))
    row_weights = _inverse(rows)
    column_weights = _inverse(columns) * support
    images = np.zeros((len(sinograms), *geometry.image_shape), dtype=np.float32)
    for _ in range(_count(iterations)):
        residual = (sinograms - projector.forward(images)) * row_weights
        images += projector.backward(residual) * column_weights
        if nonnegative:
            np.maximum(images, 0, out=images)
    images = _finish(images, nonnegative=nonnegative, mask=mask)
    return images[0] if single else images


def cgls(
    sinograms: np.ndarray,
    geometry: ParallelGeometry,
    *,
    iterations: int = 30,
    model: str = "linear",
    backend: str = "matrix",
    nonnegative: bool = False,
    mask: bool = False,
) -> np.ndarray:
    """CGLS from a zero start, ``iterations`` iterations, each sinogram its own step sizes."""
    projector = _projector(geometry, model, backend)
    sinograms, single = _batch(sinograms)
    support = _support(geometry, mask)
    images = np.zeros((len(sinograms), *geometry.image_shape), dtype=np.float32)
    residual = sinograms.copy()
    gradient = projector.backward(residual) * support
    direction = gradient.copy()
    gamma = _norms(gradient)
    for _ in range(_count(iterations)):
        projected = projector.forward(direction)
        alpha = _ratio(gamma, _norms(projected))
        images += alpha * direction
        residual -= alpha * projected
        gradient = projector.backward(residual) * support
        gamma_next = _norms(gradient)
        direction = gradient + _ratio(gamma_next, gamma) * direction
        gamma = gamma_next
    images = _finish(images, nonnegative=nonnegative, mask=mask)
    return images[0] if single else images


def ganrec(
    sinograms: np.ndarray,
    geometry: ParallelGeometry,
    *,
    iterations: int | None = None,
    seed: int = 0,
    model: str = "linear",
    nonnegative: bool = False,
    mask: bool = False,
    progress: Callable[[int], object] | None = None,
) -> np.ndarray:
    """GANrec of (A, D) or (B, A, D) sinograms, each fitted on its own through the geometry's
    projection matrix (:func:`tomobench.models.ganrec.ganrec`, whose other options keep the
    paper's values): ``iterations`` per sinogram (``None``: GANrec's 1000), networks drawn
    from ``seed``, ``mask`` a support constraint while fitting, ``progress`` called with 1
    after each sinogram. Needs the ``models`` extra (an ImportError that says how to install
    it)."""
    from tomobench.models.ganrec import ITERATIONS
    from tomobench.models.ganrec import ganrec as fit

    images = fit(
        sinograms,
        _projector(geometry, model, "matrix"),
        iterations=ITERATIONS if iterations is None else _count(iterations),
        seed=seed,
        mask=mask,
        progress=progress,
    )
    return _finish(images, nonnegative=nonnegative, mask=False)


def _batch(sinograms: np.ndarray) -> tuple[np.ndarray, bool]:
    sinograms = np.asarray(sinograms, dtype=np.float32)
    single = sinograms.ndim == 2
    return (sinograms[None] if single else sinograms), single


def _support(geometry: ParallelGeometry, mask: bool) -> np.ndarray:
    if mask:
        return circular_mask(geometry.size).astype(np.float32)
    return np.ones(geometry.image_shape, dtype=np.float32)


def _inverse(sums: np.ndarray) -> np.ndarray:
    """1 / sums where sums > 0, else 0 (rays that meet no pixel, pixels no ray meets)."""
    out = np.zeros_like(sums)
    np.divide(1.0, sums, out=out, where=sums > 1e-6)
    return out


def _norms(batch: np.ndarray) -> np.ndarray:
    """Squared norm of each item, float64, shaped to broadcast over the item."""
    values = np.einsum("bij,bij->b", batch, batch, dtype=np.float64)
    return values.reshape(-1, 1, 1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out.astype(np.float32)


def _count(iterations: int) -> int:
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        msg = f"iterations must be a positive integer, got {iterations!r}"
        raise RecipeError(msg)
    return int(iterations)


_ALGORITHMS = {"fbp": fbp, "sirt": sirt, "cgls": cgls, "ganrec": ganrec}


def _takes(method: str) -> list[str]:
    """The options of ``method``: its algorithm's keyword-only parameters."""
    parameters = inspect.signature(_ALGORITHMS[method]).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _check_options(method: str, options: dict) -> None:
    """A one-line :class:`RecipeError` for options that ``method`` does not take."""
    takes = _takes(method)
    unknown = [name for name in options if name not in takes]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        msg = (
            f"baseline {method!r} takes no option{'s' * (len(unknown) > 1)} {names} "
            f"(it takes {', '.join(takes)})"
        )
        raise RecipeError(msg)


def run(method: str, library, *, split: str = "test", indices=None, **options) -> np.ndarray:
    """Reconstruct a split of a library (or the samples ``indices`` of it) with ``method``,
    using the geometry and projection model of the library's recipe: (N, H, W) float32, or
    (N, H, W, C) for a hyperspectral library, each channel reconstructed on its own (the C
    channel sinograms of a sample go through the algorithm as one batch).

    ``backend`` "auto" (the default of FBP) resolves as for the library's split: on the CPU for
    val and test whatever the machine, so that the baseline beside every score is the same.

    A hyperspectral library's sinograms carry a background beside the sample's signal (air
    scatter: the same 2θ hump at every angle and detector pixel). As the 2020 pipeline did
    (report §6.1), it is removed before any method: for each sample and channel, the mean
    over every angle of the detector pixels that see only air
    (:func:`~tomobench.physics.geometry.air_pixels`) is subtracted from every pixel
    (:func:`air_background`). The reconstruction is returned as it is (no clipping).

    ``ganrec`` needs the ``models`` extra (TensorFlow): without it, an ImportError that says
    how to install it.

    Raises :class:`~tomobench.errors.StoreError` for a library whose build has not
    finished (its unwritten samples would read as zeros), and for a hyperspectral library
    with air scatter whose detector leaves no pixel that sees only air, and
    :class:`~tomobench.errors.RecipeError` for an unknown method or an option it does not
    take (the message names those it takes)."""
    if method not in _ALGORITHMS:
        msg = f"unknown baseline {method!r} (allowed: {', '.join(METHODS)})"
        raise RecipeError(msg)
    _check_options(method, options)
    library.require_complete("reconstructing from it", error=StoreError)
    recipe = library.recipe
    algorithm, geometry = _ALGORITHMS[method], from_recipe(recipe)
    options.setdefault("model", recipe.geometry.projector)
    if "backend" in _takes(method) and options.get("backend", "auto") == "auto":
        # evaluation splits: on the CPU, everywhere
        options["backend"] = resolve_backend(
            "auto", geometry=geometry, model=options["model"], split=split
        )
    key = f"{split}/sinograms"
    sinograms = library[key]
    if sinograms.ndim == 3:
        if indices is None:
            data = library.read(key)
        else:
            data = np.stack([library.read(key, int(index)) for index in indices])
        return algorithm(data, geometry, **options)
    air = _air_mask(library)
    indices = range(sinograms.shape[0]) if indices is None else [int(i) for i in indices]
    images = np.empty((len(indices), *geometry.image_shape, sinograms.shape[-1]), np.float32)
    for position, index in enumerate(indices):
        sinogram = library.read(key, index).astype(np.float32, copy=False)
        if air is not None:
            sinogram = (sinogram - air_background(sinogram, air)).astype(np.float32)
        channels = np.moveaxis(sinogram, -1, 0)
        images[position] = np.moveaxis(algorithm(channels, geometry, **options), 0, -1)
    return images


def air_background(sinogram: np.ndarray, air: np.ndarray) -> np.ndarray:
    """The background of one hyperspectral sinogram (A, D, C): the mean, for each channel,
    of the detector pixels ``air`` (a (D,) bool mask) over every angle: (C,) float64."""
    return np.mean(sinogram[:, air, :], axis=(0, 1), dtype=np.float64)


def _air_mask(library) -> np.ndarray | None:
    """The detector pixels of a hyperspectral library that see only air, or ``None`` where
    there is nothing to subtract (its recipe adds no air scatter and no pixel sees only air).
    A library with air scatter and no such pixel is refused: its background cannot be told
    from its signal."""
    from tomobench.physics.geometry import air_pixels

    recipe = library.recipe
    air = air_pixels(recipe)
    if air.any():
        return air
    if any(op.kind == "air" for op in recipe.noise):
        msg = (
            f"{library.path}: library {recipe.name} adds air scatter, but its detector "
            f"({len(air)} pixels) leaves no air pixels to estimate the background from "
            "(pixels whose rays pass outside the sample's support at every angle); rebuild "
            "it with a wider geometry.detector"
        )
        raise StoreError(msg)
    return None
