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

import json
import math
import os
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
    "check_library",
    "check_output",
    "check_submission",
    "check_submission_output",
    "expectation",
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


def write_submission(
    path: str | Path, reconstructions: np.ndarray, *, overwrite: bool = False
) -> Path:
    """Write ``reconstructions`` as a submission at ``path``, the format chosen by its suffix.

    What is already at ``path`` is replaced only if it is a submission tomobench writes (see
    :func:`check_submission_output`) or ``overwrite`` is true; a library, never.

    The array is written as it is (its contents are checked when it is scored). It is first
    written under a hidden temporary name beside ``path`` and renamed, so an interrupted
    write never leaves a file that looks complete. A Zarr submission's fill value is NaN, so
    a chunk that goes missing later reads as NaN and is refused when scored.
    """
    path = Path(path)
    format = _format_of(path)
    check_submission_output(path, overwrite=overwrite)
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


def read_submission(
    path: str | Path, *, expect: Callable[[tuple, np.dtype], None] | None = None
) -> np.ndarray:
    """The ``reconstructions`` array of the submission at ``path`` (read whole, unchecked).

    ``expect``, if given, is called as ``expect(shape, dtype)`` with what the file's
    metadata (the ``.npy`` header, the HDF5 or Zarr array's) says, before any data is
    read; it raises to refuse (a wrong shape is refused without reading the file).

    Raises :class:`SubmissionError` with one line naming the file for an unknown suffix, a
    missing, empty or truncated file, a file without an array ``reconstructions``, or what
    is not a regular file (``.npy``, ``.h5``) or a folder (``.zarr``): a FIFO, a device.
    """
    from tomobench.store import path_status, require_kind, shorten

    path = Path(path)
    format = _format_of(path)
    status = path_status(path, error=SubmissionError)
    if status is None:
        msg = f"{shorten(path)}: no such submission"
        raise SubmissionError(msg)
    what = {"npy": ".npy file", "hdf5": "HDF5 file", "zarr": "Zarr group"}[format]
    require_kind(path, format, what=what, error=SubmissionError, status=status)
    readers = {"npy": _read_npy, "hdf5": _read_hdf5, "zarr": _read_zarr}
    return readers[format](path, expect or _accept)


def _accept(shape: tuple, dtype: np.dtype) -> None:
    """Any shape and dtype (:func:`read_submission` without ``expect``)."""


def _npy_header(file) -> tuple[tuple, np.dtype] | None:
    """(shape, dtype) from the header of the ``.npy`` file open at its start, or None for a
    header version this numpy cannot parse alone."""
    version = np.lib.format.read_magic(file)
    headers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in headers:  # format 3.0 (UTF-8 field names): numpy reads no header alone
        return None
    shape, _, dtype = headers[version](file)
    return tuple(shape), dtype


def _read_npy(path: Path, expect) -> np.ndarray:
    try:
        with open(path, "rb") as file:
            if path.stat().st_size == 0:
                msg = f"{path}: the file is empty"
                raise SubmissionError(msg)
            header = _npy_header(file)
            if header is not None:
                shape, dtype = header
                if dtype.hasobject:
                    msg = (
                        f"{path}: {KEY} holds Python objects (dtype {dtype}); submissions "
                        "must be real floating point"
                    )
                    raise SubmissionError(msg)
                expect(shape, dtype)  # before a byte of the data is read
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


def _read_hdf5(path: Path, expect) -> np.ndarray:
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
            expect(tuple(node.shape), node.dtype)
            return node[()]
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        if isinstance(error, SubmissionError):
            raise
        msg = f"{path}: not a readable HDF5 file ({_first_line(error)})"
        raise SubmissionError(msg) from None


def _read_zarr(path: Path, expect) -> np.ndarray:
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
        expect(tuple(node.shape), np.dtype(node.dtype))
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
    check_library(library, split)
    array = np.asarray(array)
    expectation(library, split, source=source)(array.shape, array.dtype)
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


def expectation(
    library, split: str, *, source: str | Path = "submission", scale: int | None = None
) -> Callable[[tuple, np.dtype], None]:
    """``expect(shape, dtype)``, raising :class:`SubmissionError` (one line that starts
    with ``source``) unless ``dtype`` is real floating point and ``shape`` the split's
    ``images`` shape: what :func:`read_submission` checks from a file's metadata before
    it reads the data. With ``scale``, a submission of the shape of ``images_x{scale}`` is
    told that it must be brought to the high resolution."""
    expected = tuple(int(n) for n in library[f"{split}/images"].shape)
    name = library.recipe.name
    low = None
    if scale is not None:
        low = tuple(int(n) for n in library[f"{split}/images_x{scale}"].shape)

    def expect(shape: tuple, dtype: np.dtype) -> None:
        if np.dtype(dtype).kind != "f":
            msg = (
                f"{source}: {KEY} has dtype {dtype}; submissions must be real floating "
                "point (float32 or float64, say)"
            )
            raise SubmissionError(msg)
        if tuple(shape) == low:
            msg = (
                f"{source}: {KEY} has the low-resolution shape {tuple(shape)} of "
                f"images_x{scale}; a super-resolved submission has the shape of images, "
                f"{expected}"
            )
            raise SubmissionError(msg)
        if tuple(shape) != expected:
            msg = (
                f"{source}: {KEY} has shape {tuple(shape)}; split {split!r} of {name} "
                f"needs {expected}"
            )
            raise SubmissionError(msg)

    return expect


def check_library(library, split: str, *, action: str = "scoring on it") -> None:
    """Raise :class:`SubmissionError` (one line) unless ``library`` is complete, holds
    ``split`` and its arrays are what its recipe makes (``StoreError`` if not: damaged)."""
    library.require_complete(action, error=SubmissionError)
    if split not in library.splits:
        msg = (
            f"split {split!r} is not in library {library.recipe.name} "
            f"(it has {', '.join(library.splits) or 'none'})"
        )
        raise SubmissionError(msg)
    library.check_split(split)  # a damaged library is said to be, not blamed on a submission


# -- outputs --------------------------------------------------------------------------------


def check_output(path: str | Path, *, option: str, inputs: dict[str, str | Path]) -> None:
    """Raise :class:`SubmissionError` (one line) if the output ``path`` (given as
    ``option``) cannot be written: a name too long for the file system, a library, or one
    of ``inputs`` (label → path: the submission, the library), which it would replace."""
    from tomobench.store import path_status, refuse_library_as_output, shorten

    path = Path(path)
    _check_name_length(path, option)
    status = path_status(path, error=SubmissionError)
    refuse_library_as_output(path)
    for label, other in inputs.items():
        other = Path(other)
        same = path.absolute() == other.absolute()
        if not same and status is not None:
            try:
                same = path_status(other, error=SubmissionError) is not None and (
                    os.path.samefile(path, other)
                )
            except OSError:
                same = False
        if same:
            msg = f"{option} {shorten(path)} is the {label}: write it under another name"
            raise SubmissionError(msg)


def _check_name_length(path: Path, option: str) -> None:
    """A one-line error if the name of ``path``, or of the temporary beside it that an
    output is written through, is longer than the file system allows."""
    from tomobench._atomic import _temporary
    from tomobench.store import shorten

    parent = path.parent if str(path.parent) else Path(".")
    try:
        limit = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max(len(os.fsencode(p.name)) for p in (path, _temporary(path)))
    if longest > limit:
        msg = f"{option} {shorten(path)}: file name too long (more than {limit} bytes)"
        raise SubmissionError(msg)


def check_submission_output(
    path: str | Path, *, overwrite: bool = False, option: str = "--out"
) -> None:
    """Raise :class:`SubmissionError` (one line) unless a submission may be written at
    ``path``: nothing is there, or a submission tomobench writes (a ``.npy`` file of real
    floating point values; an HDF5 file or a Zarr group holding exactly one array,
    ``reconstructions``), or ``overwrite`` is true. A library is never replaced, a name too
    long for the file system never written."""
    from tomobench.store import path_status, refuse_library_as_output, shorten

    path = Path(path)
    _check_name_length(path, option)
    status = path_status(path, error=SubmissionError)
    refuse_library_as_output(path)
    if status is None:
        return
    format = _format_of(path)
    if path.is_dir() and not (format == "zarr" and (path / "zarr.json").is_file()):
        msg = f"cannot write {shorten(path)}: a folder that is not a Zarr submission is there"
        raise SubmissionError(msg)  # never replaced by a file, even with --overwrite
    if overwrite:
        return
    what = _submission_kind(path, format, status)
    if what is not None:
        msg = (
            f"{option} {shorten(path)}: {what}, not a submission tomobench wrote; "
            "refusing to replace it without --overwrite"
        )
        raise SubmissionError(msg)


def _submission_kind(path: Path, format: str, status) -> str | None:
    """None if ``path`` holds a submission as tomobench writes them, else what it is."""
    import stat

    from tomobench._text import file_kind

    needed = stat.S_ISDIR if format == "zarr" else stat.S_ISREG
    if not needed(status.st_mode):
        return f"it is {file_kind(status.st_mode)}"
    try:
        if format == "npy":
            with open(path, "rb") as file:
                header = _npy_header(file)
            if header is None or header[1].kind != "f":
                return "it is a .npy file that does not hold real floating point values"
            return None
        if format == "hdf5":
            import h5py

            if not h5py.is_hdf5(path):
                return "it is not an HDF5 file"
            with h5py.File(path, "r") as file:
                names = list(file.keys())
                if names == [KEY] and isinstance(file[KEY], h5py.Dataset):
                    return None
            return f"it holds {_names(names)}"
        meta = json.loads((path / "zarr.json").read_text())
        members = sorted(p.name for p in path.iterdir() if p.name != "zarr.json")
        if meta.get("node_type") != "group":
            return "it is not a Zarr group"
        if members == [KEY]:
            array = json.loads((path / KEY / "zarr.json").read_text())
            if array.get("node_type") == "array":
                return None
        return f"it holds {_names(members)}"
    except (OSError, ValueError, KeyError, EOFError, AttributeError):
        return "it does not read as a submission"


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
    scale: int | None = None,
    crop_border: int | None = None,
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

    With ``scale`` S, the submission is super-resolved: the split's ``images_x{S}`` brought
    back to the shape of its ``images``. Both it and ``images`` lose ``crop_border`` pixels
    (default S) on every side before they are scored, and the baseline, FBP unless told
    otherwise, becomes bicubic interpolation (:mod:`tomobench.superres`).

    Raises :class:`SubmissionError` for an invalid submission, an incomplete library or an
    unknown split, :class:`~tomobench.errors.StoreError` for a missing library.
    """
    from tomobench import __version__, superres
    from tomobench.store import open_library

    submission_path = Path(submission_path)
    with open_library(library_path) as library:
        check_library(library, split)
        if check is not None:
            check(library, split)
        recipe = library.recipe
        border = None
        if scale is not None:
            border = superres.check_scale(library, split, scale, crop_border)
            if baseline == "fbp":
                baseline = "bicubic"
            if baseline is not None and baseline not in superres.METHODS:
                msg = (
                    f"baseline {baseline!r} does not super-resolve: use one of "
                    f"{', '.join(superres.METHODS)}"
                )
                raise SubmissionError(msg)
        elif crop_border is not None:
            msg = "crop_border applies to super-resolution only: give scale too"
            raise SubmissionError(msg)
        expect = expectation(library, split, source=submission_path, scale=scale)
        array = check_submission(
            read_submission(submission_path, expect=expect),
            library,
            split,
            source=submission_path,
        )
        images = library.read(f"{split}/images")
        hyperspectral = images.ndim == 4
        if border:
            images, array = superres.crop(images, border), superres.crop(array, border)
        scores = per_sample_scores(images, array)
        channel_scores = per_channel_scores(images, array) if hyperspectral else None
        baseline_scores = baseline_channel_scores = None
        if baseline is not None:
            from tomobench import baselines

            if scale is not None:
                reconstructions = superres.crop(
                    superres.run(baseline, library, split=split, scale=scale), border
                )
            else:
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
            scale=scale,
            crop_border=border,
        )
