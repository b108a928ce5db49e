"""A figure to look at: ground truth, the FBP baseline and submissions, side by side.

One row per sample and one column per image: ground truth | FBP | each submission (for
super-resolution: low resolution | bicubic | each submission | ground truth), all on
the same grey scale [0, 1], each reconstruction's PSNR and SSIM (the scoring conventions of
:mod:`tomobench.score`) in its panel's title. Drawn with matplotlib's Agg renderer (no
display needed) into a PNG of ``PANEL_PIXELS`` × ``PANEL_PIXELS`` pixels a panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tomobench._atomic import atomic_path
from tomobench.errors import SubmissionError
from tomobench.score import (
    check_library,
    check_output,
    check_submission,
    expectation,
    per_sample_scores,
    read_submission,
)

__all__ = ["DPI", "PANEL_INCHES", "PANEL_PIXELS", "show"]

PANEL_INCHES = 2.0
DPI = 100
PANEL_PIXELS = int(PANEL_INCHES * DPI)


def show(
    library_path: str | Path,
    submissions: Sequence[str | Path] = (),
    *,
    split: str = "test",
    samples: int | Sequence[int] = 4,
    out: str | Path,
    scale: int | None = None,
    crop_border: int | None = None,
) -> Path:
    """Draw samples of a split with their reconstructions into the figure ``out`` (PNG, or
    the format its suffix names: PDF, SVG, JPEG, …); return it.

    ``samples`` is a count (the first ``samples`` of the split, or all of them if it has
    fewer) or a list of sample indices. FBP is computed for those samples only. Each
    submission is read and checked as :func:`tomobench.score.score` does, so a bad one
    raises :class:`~tomobench.errors.SubmissionError`, as does a bad sample index. A
    hyperspectral image is shown as the mean of its channels.

    With ``scale`` S (super-resolution), a row is: the low-resolution twin
    (``images_x{S}``) | bicubic interpolation | each submission | ground truth, the scores
    computed as :func:`tomobench.score.score` computes them, with ``crop_border`` (default
    S) pixels cut off every side.
    """
    from tomobench import baselines, superres
    from tomobench.store import open_library, refuse_library_as_output

    refuse_library_as_output(out)  # before any work
    kind = _figure_format(Path(out))
    inputs = {"library": library_path}
    inputs.update({f"submission {Path(path).name}": path for path in submissions})
    check_output(out, option="out", inputs=inputs)
    with open_library(library_path) as library:
        check_library(library, split, action="showing it")
        key = f"{split}/images"
        count = library[key].shape[0]
        indices = _indices(samples, count, f"split {split!r} of {library.recipe.name}")
        truth = np.stack([library.read(key, index) for index in indices])
        low, border = None, 0
        if scale is None:
            columns = [("FBP", baselines.run("fbp", library, split=split, indices=indices))]
        else:
            border = superres.check_scale(library, split, scale, crop_border)
            low_key = f"{split}/images_x{scale}"
            low = np.stack([library.read(low_key, index) for index in indices])
            columns = [("bicubic", superres.upsample(low, truth.shape[1:3], "bicubic"))]
        for path in submissions:
            expect = expectation(library, split, source=path, scale=scale)
            array = check_submission(
                read_submission(path, expect=expect), library, split, source=path
            )
            columns.append((Path(path).name, array[indices]))
    figure = _draw(truth, columns, indices, low=low, scale=scale, border=border)
    return _save(figure, Path(out), kind)


def _indices(samples: int | Sequence[int], count: int, where: str) -> list[int]:
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if samples < 1:
            msg = f"samples must be at least 1, got {samples}"
            raise SubmissionError(msg)
        return list(range(min(int(samples), count)))
    indices = [int(index) for index in samples]
    if not indices:
        msg = "samples: no sample index given"
        raise SubmissionError(msg)
    wrong = [index for index in indices if not 0 <= index < count]
    if wrong:
        msg = f"samples: index {wrong[0]} is out of range for {where} ({count} samples)"
        raise SubmissionError(msg)
    return indices


def _draw(
    truth: np.ndarray,
    columns: list[tuple[str, np.ndarray]],
    indices: list[int],
    *,
    low: np.ndarray | None = None,
    scale: int | None = None,
    border: int = 0,
):
    from matplotlib.figure import Figure

    from tomobench.superres import crop

    rows, width = len(indices), 1 + len(columns) + (low is not None)
    figure = Figure(
        figsize=(width * PANEL_INCHES, rows * PANEL_INCHES), dpi=DPI, layout="constrained"
    )
    axes = figure.subplots(rows, width, squeeze=False)
    scores = {}  # as score computes them: each image clipped to [0, 1], the border cut off
    for label, images in columns:
        found = per_sample_scores(crop(truth, border), crop(images, border))
        scores[label] = {name: np.atleast_1d(values) for name, values in found.items()}
    for row, index in enumerate(indices):
        if low is None:
            _panel(axes[row, 0], truth[row], f"ground truth\nsample {index}")
        else:
            _panel(axes[row, 0], low[row], f"low resolution (×{scale})\nsample {index}")
            _panel(axes[row, -1], truth[row], f"ground truth\nborder {border} not scored")
        for column, (label, images) in enumerate(columns, start=1):
            psnr = scores[label]["psnr"][row]
            ssim = scores[label]["ssim"][row]
            title = f"{label}\nPSNR {psnr:.2f} dB · SSIM {ssim:.3f}"
            _panel(axes[row, column], images[row], title)
    return figure


def _panel(axis, image: np.ndarray, title: str) -> None:
    if image.ndim == 3:  # hyperspectral (H, W, C): the mean of its channels
        image = image.mean(axis=-1)
    axis.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    axis.set_title(title, fontsize=7)
    axis.set_axis_off()


def _figure_format(out: Path) -> str:
    """The format the suffix of ``out`` names (png, pdf, svg, jpg, …, as matplotlib writes
    them), or a one-line error."""
    from matplotlib.backend_bases import FigureCanvasBase

    kind = out.suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if kind not in formats:
        msg = f"out {out}: name the figure *.{', *.'.join(sorted(formats))}"
        raise SubmissionError(msg)
    return kind


def _save(figure, out: Path, kind: str) -> Path:
    with atomic_path(out, error=SubmissionError) as temporary:
        figure.savefig(temporary, format=kind, dpi=DPI)
    return out
