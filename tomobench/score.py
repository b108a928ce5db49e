"""Validate a submission, score it against a library's ground truth, and report.

A submission is one array ``reconstructions`` with exactly the shape of the split's
``images``, in the split's sample order, stored as ``.npy``, ``.h5``/``.hdf5`` (dataset
``reconstructions``) or ``.zarr`` (array ``reconstructions`` in a group). Every metric of
:data:`tomobench.metrics.METRICS` is computed per sample with the fixed conventions of
:data:`CONVENTIONS`, for the submission and for a classical baseline (FBP) on the same
samples, and summarised as mean, std, median, min and max. Every reconstruction scored,
submission and baseline alike, is first clipped to the data range [0, 1]
(:func:`postprocess`); the submission file itself is never changed.

The result is a :class:`~tomobench.report.Report` (:mod:`tomobench.report`: statistics, the
table, JSON and CSV). Its names (``Report``, ``summarise``, …) can be imported from here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tomobench._atomic import atomic_path
from tomobench._atomic import write_text_atomically as write_text
from tomobench.errors import SubmissionError
from tomobench.metrics import METRICS
from tomobench.report import CONVENTIONS, STATISTICS, Report, format_value, jsonable, summarise

if TYPE_CHECKING:
    from tomobench.store import Library

__all__ = [
    "CONVENTIONS",
    "KEY",
    "STATISTICS",
    "Report",
    "check_submission",
    "format_value",
    "jsonable",
    "per_channel_scores",
    "per_sample_scores",
    "postprocess",
    "read_submission",
    "score",
    "summarise",
    "write_submission",
    "write_text",
]

KEY = "reconstructions"
"""The name of the one array a submission holds (in ``.h5`` and ``.zarr`` files)."""

SUFFIXES = {".npy": "npy", ".h5": "hdf5", ".hdf5": "hdf5", ".zarr": "zarr"}


# -- writing and reading submissions ---------------------------------------------------------


def _format_of(path: Path) -> str:
    format = SUFFIXES.get(path.suffix.lower())
    if format is None:
        msg = (
            f"{path}: unknown submission format {path.suffix or '(no suffix)'!r} "
            f"(name it *{', *'.join(SUFFIXES)})"
        )
        raise SubmissionError(msg)
    return format


def write_submission(path: str | Path, reconstructions: np.ndarray) -> Path:
    """Write ``reconstructions`` as a submission at ``path``, the format chosen by its suffix.

    The array is written as it is (its contents are checked when it is scored). It is first
    written under a hidden temporary name beside ``path`` and renamed, so an interrupted
    write never leaves a file that looks complete. A Zarr submission's fill value is NaN, so
    a chunk that goes missing later reads as NaN and is refused when scored.
    """
    path = Path(path)
    format = _format_of(path)
    array = np.asarray(reconstructions)
    with atomic_path(path, error=SubmissionError) as temporary:
        if path.is_dir() and not (format == "zarr" and (path / "zarr.json").is_file()):
            msg = f"cannot write {path}: a folder that is not a Zarr submission is there"
            raise SubmissionError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
        if format == "npy":
            with open(temporary, "wb") as file:
                np.save(file, array, allow_pickle=False)
        elif format == "hdf5":
            import h5py

            with h5py.File(temporary, "w") as file:
                file.create_dataset(KEY, data=array)
        else:
            import zarr

            group = zarr.open_group(str(temporary), mode="w")
            fill = np.nan if array.dtype.kind in "fc" else 0
            chunks = (max(1, min(len(array), 16)), *array.shape[1:]) if array.ndim else ()
            group.create_array(
                KEY, shape=array.shape, dtype=array.dtype, chunks=chunks, fill_value=fill
            )[...] = array
    return path


def read_submission(path: str | Path) -> np.ndarray:
    """The ``reconstructions`` array of the submission at ``path`` (read whole, unchecked).

    Raises :class:`SubmissionError` with one line naming the file for an unknown suffix, a
    missing, empty or truncated file, or a file without an array ``reconstructions``.
    """
    path = Path(path)
    format = _format_of(path)
    if not path.exists():
        msg = f"{path}: no such submission"
        raise SubmissionError(msg)
    readers = {"npy": _read_npy, "hdf5": _read_hdf5, "zarr": _read_zarr}
    return readers[format](path)


def _read_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            if path.stat().st_size == 0:
                msg = f"{path}: the file is empty"
                raise SubmissionError(msg)
            version = np.lib.format.read_magic(file)
            headers = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }
            if version in headers:
                shape, _, dtype = headers[version](file)
                if dtype.hasobject:
                    msg = (
                        f"{path}: {KEY} holds Python objects (dtype {dtype}); submissions "
                        "must be real floating point"
                    )
                    raise SubmissionError(msg)
                needed = math.prod(shape) * dtype.itemsize
                present = path.stat().st_size - file.tell()
                if present < needed:
                    msg = (
                        f"{path}: the file is truncated: it holds {present} of the {needed} "
                        f"bytes of a {dtype} array of shape {shape}"
                    )
                    raise SubmissionError(msg)
            file.seek(0)
            return np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, SubmissionError):
            raise
        msg = f"{path}: not a readable .npy file ({_first_line(error)})"
        raise SubmissionError(msg) from None


def _read_hdf5(path: Path) -> np.ndarray:
    import h5py

    if path.is_file() and path.stat().st_size == 0:
        msg = f"{path}: the file is empty"
        raise SubmissionError(msg)
    try:
        with h5py.File(path, "r") as file:
            if KEY not in file:
                msg = f"{path}: no array {KEY!r} (the file has {_names(file.keys())})"
                raise SubmissionError(msg)
            node = file[KEY]
            if not isinstance(node, h5py.Dataset):
                msg = f"{path}: {KEY!r} is a group, not an array"
                raise SubmissionError(msg)
            return node[()]
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        if isinstance(error, SubmissionError):
            raise
        msg = f"{path}: not a readable HDF5 file ({_first_line(error)})"
        raise SubmissionError(msg) from None


def _read_zarr(path: Path) -> np.ndarray:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        if KEY not in group:
            msg = f"{path}: no array {KEY!r} (the group has {_names(group.keys())})"
            raise SubmissionError(msg)
        node = group[KEY]
        if not isinstance(node, zarr.Array):
            msg = f"{path}: {KEY!r} is a group, not an array"
            raise SubmissionError(msg)
        return node[...]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:  # codecs
        if isinstance(error, SubmissionError):
            raise
        from tomobench.store.zarr import settle

        settle()
        msg = f"{path}: not a readable Zarr group ({_first_line(error)})"
        raise SubmissionError(msg) from None


def _names(keys) -> str:
    keys = sorted(keys)
    return ", ".join(repr(key) for key in keys) if keys else "nothing"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- checking -------------------------------------------------------------------------------


def check_submission(
    array: np.ndarray, library, split: str, *, source: str | Path = "submission"
) -> np.ndarray:
    """Check ``array`` against split ``split`` of an open ``library``; return it unchanged.

    The library must be complete and hold the split; the array must be real floating point,
    have exactly the split's ``images`` shape, and be finite. Each failure raises
    :class:`SubmissionError` with one line that starts with ``source`` (the file's name).
    """
    _check_library(library, split)
    array = np.asarray(array)
    name = library.recipe.name
    if array.dtype.kind != "f":
        msg = (
            f"{source}: {KEY} has dtype {array.dtype}; submissions must be real floating "
            "point (float32 or float64, say)"
        )
        raise SubmissionError(msg)
    expected = tuple(library[f"{split}/images"].shape)
    if array.shape != expected:
        msg = (
            f"{source}: {KEY} has shape {array.shape}; split {split!r} of {name} needs {expected}"
        )
        raise SubmissionError(msg)
    finite = np.isfinite(array)
    if not finite.all():
        nan = int(np.isnan(array).sum())
        infinite = int(array.size - finite.sum()) - nan
        counts = " and ".join(
            text
            for count, text in ((nan, f"{nan} NaN"), (infinite, f"{infinite} infinite"))
            if count
        )
        msg = f"{source}: {KEY} has {counts} values (of {array.size}); every value must be finite"
        raise SubmissionError(msg)
    return array


def _check_library(library, split: str, *, action: str = "scoring on it") -> None:
    library.require_complete(action, error=SubmissionError)
    if split not in library.splits:
        msg = (
            f"split {split!r} is not in library {library.recipe.name} "
            f"(it has {', '.join(library.splits) or 'none'})"
        )
        raise SubmissionError(msg)


# -- scoring --------------------------------------------------------------------------------


def postprocess(reconstructions: np.ndarray) -> np.ndarray:
    """The one post-processing rule of every scored reconstruction, submission or baseline:
    values clipped to the data range [0, 1] (a copy; the input is left as it is). Every
    ground truth lies in [0, 1], so clipping can only lower each pixel's error."""
    low, high = 0.0, CONVENTIONS["data_range"]
    return np.clip(np.asarray(reconstructions), low, high)


def per_sample_scores(reference: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`~tomobench.metrics.METRICS` for each image of ``test``
    against ``reference`` (same shape), with the fixed conventions (``test`` clipped to
    [0, 1] by :func:`postprocess`): name → (n,) values."""
    test = postprocess(test)
    return {
        name: np.asarray(metric.function(reference, test, data_range=CONVENTIONS["data_range"]))
        for name, metric in METRICS.items()
    }


def per_channel_scores(reference: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for each channel of hyperspectral stacks ``(n, H, W, C)``, averaged
    over the samples, ``test`` clipped as by :func:`per_sample_scores`: name → (C,)."""
    test = postprocess(test)
    data_range = CONVENTIONS["data_range"]
    return {
        name: np.mean(
            metric.function(reference, test, data_range=data_range, per_channel=True), axis=0
        )
        for name, metric in METRICS.items()
    }


def score(
    submission_path: str | Path,
    library_path: str | Path,
    *,
    split: str = "test",
    baseline: str | None = "fbp",
    check: Callable[[Library, str], None] | None = None,
) -> Report:
    """Score the submission at ``submission_path`` on split ``split`` of a library.

    Every metric of :data:`~tomobench.metrics.METRICS` is computed per sample against the
    split's ``images`` with ``data_range=1``, and the same for ``baseline`` (a method of
    :func:`tomobench.baselines.run`, default FBP; ``None`` for none) on the same samples.
    Both are clipped to [0, 1] first (:func:`postprocess`).

    ``check``, if given, is called as ``check(library, split)`` with the open library, once
    it is found complete and holding the split, before the submission is read or anything
    computed; it raises to refuse. With ``check=identity_check(DIR)``
    (:func:`tomobench.leaderboard.identity_check`), nothing is computed if an entry of the
    leaderboard ``DIR`` holds this library name and split with another identity (recipe,
    backend or format), or another recipe.

    Raises :class:`SubmissionError` for an invalid submission, an incomplete library or an
    unknown split, :class:`~tomobench.errors.StoreError` for a missing library.
    """
    from tomobench import __version__
    from tomobench.store import open_library

    submission_path = Path(submission_path)
    with open_library(library_path) as library:
        _check_library(library, split)
        if check is not None:
            check(library, split)
        recipe = library.recipe
        array = check_submission(
            read_submission(submission_path), library, split, source=submission_path
        )
        images = library.read(f"{split}/images")
        hyperspectral = images.ndim == 4
        scores = per_sample_scores(images, array)
        channel_scores = per_channel_scores(images, array) if hyperspectral else None
        baseline_scores = baseline_channel_scores = None
        if baseline is not None:
            from tomobench import baselines

            reconstructions = baselines.run(baseline, library, split=split)
            baseline_scores = per_sample_scores(images, reconstructions)
            if hyperspectral:
                baseline_channel_scores = per_channel_scores(images, reconstructions)
        return Report(
            library=recipe.name,
            library_path=str(library.path),
            recipe_sha256=library.recipe_sha256,
            split=split,
            n=int(images.shape[0]),
            task=str(library.attrs.get("task", recipe.task)),
            tomobench_version=__version__,
            submission=str(submission_path),
            scores=scores,
            higher_is_better={name: m.higher_is_better for name, m in METRICS.items()},
            units={name: m.unit for name, m in METRICS.items()},
            identity=library.identity(split),
            baseline=baseline,
            baseline_scores=baseline_scores,
            channel_scores=channel_scores,
            baseline_channel_scores=baseline_channel_scores,
        )
