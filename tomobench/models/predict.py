"""Prediction: a trained run folder + a library split → a submission.

The model's inputs (sinograms; or the low-resolution images ``images_x{S}``, and the
absorption image for a guided model) are read one storage chunk at a time, normalised with
the run's own ``normalisation.json`` (the values computed from its training split, whatever
library is predicted on), passed through ``model.keras`` in inference mode (dropout off), and
the images clipped to [0, 1], the range of every ground truth (docs/format.md): a value
outside it is an error whatever the truth, so clipping can only lower each pixel's error.
A super-resolution model super-resolves a hyperspectral cube channel by channel, whether it
was trained on every channel or on channel sums.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from tomobench.models.data import Normalisation, Pairs, chunk_length
from tomobench.models.errors import RunError
from tomobench.score import check_submission_output, write_submission
from tomobench.store import open_library
from tomobench.store.format import chunk_bounds, chunk_count

__all__ = [
    "check_split",
    "load_run",
    "predict",
    "reconstruct",
    "reconstruct_split",
    "run_pairs",
    "superresolve",
    "superresolve_split",
]


def load_run(run: str | Path) -> tuple[keras.Model, Normalisation]:
    """The trained model and the normalisation of a run folder."""
    run = Path(run)
    path = run / "model.keras"
    if not path.exists():
        if (run / "config.yaml").exists():
            msg = (
                f"{run}: no trained model (model.keras) yet; finish the run first with "
                f"tomobench train {run / 'config.yaml'}"
            )
        else:
            msg = f"{run}: not a run folder (no model.keras); train one with tomobench train"
        raise RunError(msg)
    try:
        model = keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as error:
        msg = f"{path}: cannot be loaded ({str(error).splitlines()[0]})"
        raise RunError(msg) from None
    return model, Normalisation.load(run / "normalisation.json")


def reconstruct(
    model: keras.Model,
    sinograms: np.ndarray,
    normalisation: Normalisation,
    *,
    batch_size: int = 256,
    clip: bool = True,
) -> np.ndarray:
    """Images (float32) of a stack of raw sinograms ``(n, angles, detector)``."""
    x = normalisation.apply(sinograms)
    images = np.concatenate(
        [
            np.asarray(model.predict_on_batch(x[start : start + batch_size]), dtype=np.float32)
            for start in range(0, len(x), batch_size)
        ]
        or [np.empty((0, *model.output_shape[1:]), np.float32)]
    )
    if clip:
        np.clip(images, 0.0, 1.0, out=images)
    return images


def predict(
    run: str | Path,
    library_path: str | Path,
    *,
    split: str = "test",
    out: str | Path,
    batch_size: int = 256,
    clip: bool = True,
    overwrite: bool = False,
) -> Path:
    """Reconstruct split ``split`` of a library with the model of run folder ``run`` and
    write the images as a submission at ``out`` (.npy, .h5 or .zarr); return its path.
    What is at ``out`` is replaced only if it is a submission tomobench wrote, or
    ``overwrite`` is true (:func:`~tomobench.score.check_submission_output`: checked before
    the model runs).

    Raises :class:`~.errors.RunError` for a folder without a trained model, an incomplete
    library, a missing split, or sinograms or images whose shape the model does not take.
    """
    check_submission_output(out, overwrite=overwrite)
    model, normalisation = load_run(run)
    pairs = run_pairs(run)
    with open_library(library_path) as library:
        if pairs.super_resolution:
            images = superresolve_split(
                model,
                normalisation,
                pairs,
                library,
                split=split,
                batch_size=batch_size,
                clip=clip,
            )
        else:
            images = reconstruct_split(
                model, normalisation, library, split=split, batch_size=batch_size, clip=clip
            )
    return write_submission(out, images, overwrite=overwrite)


def run_pairs(run: str | Path) -> Pairs:
    """What the model of a run folder takes and gives (from its ``config.yaml``)."""
    from tomobench.models.config import load_config
    from tomobench.models.errors import ConfigError

    path = Path(run) / "config.yaml"
    try:
        return Pairs.of(load_config(path))
    except ConfigError as error:
        msg = f"{run}: its config does not read ({error})"
        raise RunError(msg) from None


def superresolve(
    model: keras.Model,
    low: np.ndarray,
    normalisation: Normalisation,
    *,
    guide: np.ndarray | None = None,
    batch_size: int = 64,
    clip: bool = True,
) -> np.ndarray:
    """Super-resolved images (float32) of low-resolution images ``(n, h, w)`` (and, for a
    guided model, their high-resolution guides ``(n, H, W)``), ``(n, h·S, w·S)``."""
    x = normalisation.apply(low)[..., np.newaxis]
    g = None if guide is None else normalisation.apply_guide(guide)[..., np.newaxis]
    parts = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if g is not None:
            batch = [batch, g[start : start + batch_size]]
        parts.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32)[..., 0])
    if not parts:
        return np.empty((0, 0, 0), np.float32)
    images = np.concatenate(parts)
    if normalisation.target:
        images = normalisation.restore(images)
    if clip:
        np.clip(images, 0.0, 1.0, out=images)
    return images


def superresolve_split(
    model: keras.Model,
    normalisation: Normalisation,
    pairs: Pairs,
    library,
    *,
    split: str = "test",
    batch_size: int = 64,
    clip: bool = True,
) -> np.ndarray:
    """The images (float32, the split's ``images`` shape) that ``model`` super-resolves from
    ``images_x{S}`` of split ``split`` of an open library, one storage chunk at a time; a
    hyperspectral cube channel by channel.

    Raises :class:`~.errors.RunError` for an incomplete library, a missing split, or a
    library without the model's inputs.
    """
    check_split(library, split)
    arrays = library.arrays(split)
    for name in pairs.inputs:
        if name not in arrays:
            msg = (
                f"the model super-resolves ×{pairs.scale} and takes {' and '.join(pairs.inputs)}, "
                f"but library {library.path} holds no {split}/{name}"
            )
            raise RunError(msg)
    low, target = arrays[pairs.inputs[0]], arrays["images"]
    guide = arrays[pairs.inputs[1]] if len(pairs.inputs) > 1 else None
    shape = tuple(int(n) for n in target.shape)
    count = shape[0]
    each = dataclasses.replace(pairs, channels="each", patch=None)
    output = np.empty(shape, dtype=np.float32)
    length = chunk_length(low, library.recipe.output.chunk)
    for index in range(chunk_count(count, length)):
        start, stop = chunk_bounds(count, length, index)
        images = each.as_images(low[start:stop])
        guides = None
        if guide is not None:
            guides = np.repeat(
                np.asarray(guide[start:stop], np.float32), len(images) // (stop - start), axis=0
            )
        high = superresolve(
            model, images, normalisation, guide=guides, batch_size=batch_size, clip=clip
        )
        if high.shape[1:] != shape[1:3]:
            msg = (
                f"the model makes {high.shape[1]} × {high.shape[2]} images of "
                f"{split}/{pairs.inputs[0]}, but {library.path} has {split}/images of "
                f"{shape[1]} × {shape[2]}"
            )
            raise RunError(msg)
        if len(shape) == 4:  # (k·C, H, W) back to cubes (k, H, W, C)
            high = np.moveaxis(high.reshape(stop - start, shape[3], *shape[1:3]), 1, -1)
        output[start:stop] = high
    return output


def reconstruct_split(
    model: keras.Model,
    normalisation: Normalisation,
    library,
    *,
    split: str = "test",
    batch_size: int = 256,
    clip: bool = True,
) -> np.ndarray:
    """The images (float32, the split's ``images`` shape) that ``model`` reconstructs from
    the sinograms of split ``split`` of an open library, read one storage chunk at a time.

    Raises :class:`~.errors.RunError` for an incomplete library, a missing split, or
    sinograms or images whose shape the model does not take.
    """
    check_split(library, split)
    sinograms = library[f"{split}/sinograms"]
    images_shape = tuple(library[f"{split}/images"].shape)
    _check_shapes(model, library, tuple(sinograms.shape[1:]), images_shape[1:])
    count = int(sinograms.shape[0])
    length = chunk_length(sinograms, library.recipe.output.chunk)
    output = np.empty(images_shape, dtype=np.float32)
    for index in range(chunk_count(count, length)):
        start, stop = chunk_bounds(count, length, index)
        output[start:stop] = reconstruct(
            model, sinograms[start:stop], normalisation, batch_size=batch_size, clip=clip
        )
    return output


def check_split(library, split: str) -> None:
    """Raise :class:`~.errors.RunError` unless ``library`` is complete and has ``split``."""
    library.require_complete("predicting on it", error=RunError)
    if split not in library.splits:
        msg = (
            f"split {split!r} is not in library {library.path} "
            f"(it has {', '.join(library.splits) or 'none'})"
        )
        raise RunError(msg)


def _check_shapes(model, library, sinogram: tuple, image: tuple) -> None:
    takes, gives = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    if takes != sinogram or gives != image:
        msg = (
            f"model {model.name} maps sinograms {takes} to images {gives}, but library "
            f"{library.path} has sinograms {sinogram} and images {image}; a model predicts "
            "only on libraries of the geometry and size it was trained on"
        )
        raise RunError(msg)
