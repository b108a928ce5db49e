"""Prediction: a trained run folder + a library split → a submission.

The sinograms are read one storage chunk at a time, normalised with the run's own
``normalisation.json`` (the values computed from its training split, whatever library is
predicted on), passed through ``model.keras`` in inference mode (dropout off), and the
images clipped to [0, 1], the range of every ground truth (docs/format.md): a value outside it
is an error whatever the truth, so clipping can only lower each pixel's error.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from tomobench.models.data import Normalisation, chunk_length
from tomobench.models.errors import RunError
from tomobench.score import check_submission_output, write_submission
from tomobench.store import open_library
from tomobench.store.format import chunk_bounds, chunk_count

__all__ = ["check_split", "load_run", "predict", "reconstruct", "reconstruct_split"]


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
    with open_library(library_path) as library:
        images = reconstruct_split(
            model, normalisation, library, split=split, batch_size=batch_size, clip=clip
        )
    return write_submission(out, images, overwrite=overwrite)


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
