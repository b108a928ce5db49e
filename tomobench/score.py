"""Validate a submission, score it against a library's ground truth, and report.

A submission is one array ``reconstructions`` with exactly the shape of the split's
``images``, in the split's sample order, stored as ``.npy``, ``.h5``/``.hdf5`` (dataset
``reconstructions``) or ``.zarr`` (array ``reconstructions`` in a group). Every metric of
:data:`tomobench.metrics.METRICS` is computed per sample with the fixed conventions of
:data:`CONVENTIONS`, for the submission and for a classical baseline (FBP) on the same
samples, and summarised as mean, std, median, min and max. Every reconstruction scored,
submission and baseline alike, is first clipped to the data range [0, 1]
(:func:`postprocess`); the submission file itself is never changed.

Scores are floats; an exact reconstruction has a PSNR of ``+inf``. JSON has no infinity, so
:meth:`Report.to_json` writes ``+inf``/``-inf`` as the strings ``"inf"``/``"-inf"`` (read
them back with ``float()``) and a statistic that is undefined (the std of values that include
an infinity) as ``null``. It never writes NaN.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomobench.errors import SubmissionError, TomobenchError
from tomobench.metrics import METRICS, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WIN

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
STATISTICS = ("mean", "std", "median", "min", "max")

CONVENTIONS = {
    "data_range": 1.0,
    "ssim": {
        "reference": "Wang et al. 2004",
        "window": "gaussian",
        "sigma": SSIM_SIGMA,
        "taps": SSIM_WIN,
        "K1": SSIM_K1,
        "K2": SSIM_K2,
        "covariance": "population",
    },
    "postprocessing": "every reconstruction, submission and baseline, is clipped to [0, 1] "
    "before it is scored",
    "channels": "a hyperspectral stack (N, H, W, C) scores one PSNR per cube, from the mean "
    "squared error over its H*W*C values, and one SSIM per cube, the mean of its channels' "
    "SSIMs weighted by each channel's energy in the reference (the sum of its squared "
    "values; equal weights if the reference is all zero); per_channel holds each "
    "channel's PSNR and SSIM, averaged over the samples",
    "std": "population standard deviation (ddof=0) over the samples",
    "infinity": "an exact reconstruction has PSNR +inf, written in JSON as the string 'inf'; "
    "a statistic that is undefined (the std of values including an infinity) is null",
}
"""The scoring conventions every report states (docs/scoring.md, "Conventions")."""


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
    from tomobench.store import refuse_library_as_output

    path = Path(path)
    format = _format_of(path)
    refuse_library_as_output(path)
    if path.is_dir() and not (format == "zarr" and (path / "zarr.json").is_file()):
        msg = f"cannot write {path}: a folder that is not a Zarr submission is there"
        raise SubmissionError(msg)
    array = np.asarray(reconstructions)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(temporary)
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
        _replace(temporary, path)
    except OSError as error:
        msg = f"cannot write {path}: {error.strerror or error}"
        raise SubmissionError(msg) from None
    finally:
        _remove(temporary)
    return path


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing a file or a whole folder (a Zarr group)."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


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


def _check_library(library, split: str) -> None:
    if not library.complete:
        msg = (
            f"{library.path}: the library is incomplete (a build in progress or "
            "interrupted); finish the build before scoring on it"
        )
        raise SubmissionError(msg)
    if split not in library.splits:
        msg = (
            f"split {split!r} is not in library {library.recipe.name} "
            f"(it has {', '.join(library.splits) or 'none'})"
        )
        raise SubmissionError(msg)


# -- scoring --------------------------------------------------------------------------------


def summarise(values: np.ndarray) -> dict[str, float]:
    """Mean, std (population), median, min and max of per-sample scores, as floats.

    An infinite score makes the mean (and perhaps median and max) infinite and the std NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "median": float(np.median(values)),
            "min": float(np.min(values)),
            "max": float(np.max(values)),
        }


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


@dataclass(frozen=True, eq=False)
class Report:
    """The scores of one submission on one split of one library, beside a baseline's.

    ``scores`` and ``baseline_scores`` map each metric name to its per-sample values (shape
    ``(n,)``, float64, sample order of the split). ``baseline_scores`` is ``None`` when no
    baseline was run. ``identity`` is the split's identity
    (:meth:`tomobench.store.Library.identity`: ``recipe_sha256``, ``backend``,
    ``tomobench_format`` and their digest ``sha256``). For a hyperspectral library,
    ``channel_scores`` (and ``baseline_channel_scores``) map each metric to its value per
    channel, averaged over the samples (shape ``(C,)``); ``None`` for a 2-D library.
    """

    library: str
    library_path: str
    recipe_sha256: str
    split: str
    n: int
    task: str
    tomobench_version: str
    submission: str
    scores: dict[str, np.ndarray]
    higher_is_better: dict[str, bool]
    units: dict[str, str]
    identity: dict
    baseline: str | None = None
    baseline_scores: dict[str, np.ndarray] | None = None
    channel_scores: dict[str, np.ndarray] | None = None
    baseline_channel_scores: dict[str, np.ndarray] | None = None
    conventions: dict = field(default_factory=lambda: json.loads(json.dumps(CONVENTIONS)))

    @property
    def metrics(self) -> list[str]:
        return list(self.scores)

    def summary(self, *, baseline: bool = False) -> dict[str, dict[str, float]]:
        """Statistics of each metric, for the submission (or the baseline)."""
        scores = self.baseline_scores if baseline else self.scores
        if scores is None:
            msg = "this report has no baseline"
            raise ValueError(msg)
        return {name: summarise(values) for name, values in scores.items()}

    def to_json(self) -> dict:
        """The report as a JSON-serialisable dict (no NaN; infinities as ``"inf"``).

        Keys: ``report_format``, ``tomobench_version``, ``library``, ``library_path``,
        ``recipe_sha256``, ``identity``, ``task``, ``split``, ``n``, ``submission``,
        ``baseline``, ``conventions``, ``metrics`` (per metric: ``higher_is_better``,
        ``unit``, ``submission`` and ``baseline`` statistics), ``per_sample``
        (``submission`` and ``baseline``: per metric, one value per sample) and
        ``per_channel`` (hyperspectral: ``channels``, and for ``submission`` and
        ``baseline`` per metric one value per channel, the mean over the samples;
        ``null`` for a 2-D library). Without a baseline, the ``baseline`` parts are left
        out and ``baseline`` is ``null``.
        """
        metrics = {}
        for name in self.metrics:
            entry = {
                "higher_is_better": self.higher_is_better[name],
                "unit": self.units[name],
                "submission": jsonable(summarise(self.scores[name])),
            }
            if self.baseline_scores is not None:
                entry["baseline"] = jsonable(summarise(self.baseline_scores[name]))
            metrics[name] = entry
        per_sample = {"submission": {k: jsonable(v) for k, v in self.scores.items()}}
        if self.baseline_scores is not None:
            per_sample["baseline"] = {k: jsonable(v) for k, v in self.baseline_scores.items()}
        per_channel = None
        if self.channel_scores is not None:
            channels = self.channel_scores
            per_channel = {
                "channels": len(next(iter(channels.values()))),
                "submission": {k: jsonable(v) for k, v in channels.items()},
            }
            if self.baseline_channel_scores is not None:
                per_channel["baseline"] = {
                    k: jsonable(v) for k, v in self.baseline_channel_scores.items()
                }
        return {
            "report_format": 2,
            "tomobench_version": self.tomobench_version,
            "library": self.library,
            "library_path": self.library_path,
            "recipe_sha256": self.recipe_sha256,
            "identity": dict(self.identity),
            "task": self.task,
            "split": self.split,
            "n": self.n,
            "submission": self.submission,
            "baseline": self.baseline,
            "conventions": self.conventions,
            "metrics": metrics,
            "per_sample": per_sample,
            "per_channel": per_channel,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically); return the path."""
        text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        return write_text(Path(path), text)

    def write_csv(self, path: str | Path) -> Path:
        """One row per sample: its index, then each metric of the submission and the
        baseline (columns ``submission_psnr``, …, ``fbp_psnr``, …). Infinity is ``inf``."""
        path = Path(path)
        columns = {f"submission_{name}": values for name, values in self.scores.items()}
        if self.baseline_scores is not None:
            columns |= {f"{self.baseline}_{k}": v for k, v in self.baseline_scores.items()}
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["index", *columns])
        for index in range(self.n):
            writer.writerow([index, *(repr(float(v[index])) for v in columns.values())])
        return write_text(path, text.getvalue())

    def table(self):
        """A :class:`rich.table.Table`: one row per metric and statistic, one column for the
        submission and one for the baseline; for a hyperspectral library, also the lowest,
        median and highest of the per-channel means of each metric (every channel's value
        is in :meth:`to_json`, ``per_channel``)."""
        from rich.table import Table

        identity = self.identity
        caption = (
            f"identity {identity['sha256'][:12]}… ({identity['backend']}, format "
            f"{identity['tomobench_format']}) · recipe sha256 {self.recipe_sha256[:12]}… · "
            f"clipped to [0, 1] · data_range 1 · {Path(self.submission).name}"
        )
        if self.channel_scores is not None:
            caption += (
                " · hyperspectral: PSNR over the whole cube, SSIM weighted by channel "
                "energy; per-channel values in the JSON report (per_channel)"
            )
        table = Table(title=f"{self.library} · split {self.split} · n = {self.n}", caption=caption)
        table.add_column("metric")
        table.add_column("statistic")
        table.add_column("submission", justify="right")
        baseline = self.summary(baseline=True) if self.baseline_scores is not None else None
        if baseline is not None:
            table.add_column(f"{self.baseline.upper()} baseline", justify="right")
        submission = self.summary()
        for name in self.metrics:
            arrow = "↑" if self.higher_is_better[name] else "↓"
            unit = f" ({self.units[name]})" if self.units[name] else ""
            for row, statistic in enumerate(STATISTICS):
                cells = [f"{name}{unit} {arrow}" if row == 0 else "", statistic]
                cells.append(format_value(submission[name][statistic], self.units[name]))
                if baseline is not None:
                    cells.append(format_value(baseline[name][statistic], self.units[name]))
                table.add_row(*cells, end_section=row == len(STATISTICS) - 1)
        if self.channel_scores is not None:
            self._channel_rows(table)
        return table

    def _channel_rows(self, table) -> None:
        """Rows summarising the per-channel means: the lowest, median and highest channel."""
        columns = [self.channel_scores]
        if self.baseline_scores is not None:
            columns.append(self.baseline_channel_scores or {})
        rows = (("lowest channel", np.min), ("median channel", np.median),
                ("highest channel", np.max))  # fmt: skip
        for name in self.metrics:
            unit = f" ({self.units[name]})" if self.units[name] else ""
            for row, (label, function) in enumerate(rows):
                cells = [f"{name}{unit} per channel" if row == 0 else "", label]
                for scores in columns:
                    values = scores.get(name)
                    value = None if values is None else float(function(values))
                    cells.append(format_value(value, self.units[name]))
                table.add_row(*cells, end_section=row == len(rows) - 1)


def format_value(value: float | None, unit: str = "") -> str:
    """A score as the tables print it: 2 decimals for dB, 4 otherwise; ``inf``; ``–``."""
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2f}" if unit == "dB" else f"{value:.4f}"


def jsonable(values):
    """Floats (or a dict / array of them) made JSON-safe: ±inf → "inf"/"-inf", NaN → None."""
    if isinstance(values, dict):
        return {key: jsonable(value) for key, value in values.items()}
    if isinstance(values, np.ndarray):
        return [jsonable(float(value)) for value in values.tolist()]
    value = float(values)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def write_text(path: Path, text: str) -> Path:
    """``text`` written to ``path`` through a temporary file beside it (a library is never
    replaced); an OSError becomes one line."""
    from tomobench.store import refuse_library_as_output

    refuse_library_as_output(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        msg = f"cannot write {path}: {error.strerror or error}"
        raise TomobenchError(msg) from None
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def score(
    submission_path: str | Path,
    library_path: str | Path,
    *,
    split: str = "test",
    baseline: str | None = "fbp",
    leaderboard: str | Path | None = None,
) -> Report:
    """Score the submission at ``submission_path`` on split ``split`` of a library.

    Every metric of :data:`~tomobench.metrics.METRICS` is computed per sample against the
    split's ``images`` with ``data_range=1``, and the same for ``baseline`` (a method of
    :func:`tomobench.baselines.run`, default FBP; ``None`` for none) on the same samples.
    Both are clipped to [0, 1] first (:func:`postprocess`). With ``leaderboard`` (a
    leaderboard folder), nothing is computed if an entry there holds this library name and
    split with another identity (recipe, backend or format), or another recipe.

    Raises :class:`SubmissionError` for an invalid submission, an incomplete library or an
    unknown split, :class:`~tomobench.errors.StoreError` for a missing library.
    """
    from tomobench import __version__
    from tomobench.store import open_library

    submission_path = Path(submission_path)
    with open_library(library_path) as library:
        _check_library(library, split)
        recipe = library.recipe
        identity = library.identity(split)
        if leaderboard is not None:
            from tomobench.leaderboard import check_identity

            check_identity(leaderboard, recipe.name, split, identity)
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
            identity=identity,
            baseline=baseline,
            baseline_scores=baseline_scores,
            channel_scores=channel_scores,
            baseline_channel_scores=baseline_channel_scores,
        )
