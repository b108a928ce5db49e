"""The report of a score: per-sample scores of a submission (and of a baseline beside it)
on one split of one library, their statistics, and how they are printed and written.

:func:`tomobench.score.score` makes a :class:`Report`; :mod:`tomobench.leaderboard` and
:mod:`tomobench.models.cross` summarise and print scores the same way (:func:`summarise`,
:func:`format_value`, :func:`jsonable`).

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tomobench._atomic import write_text_atomically
from tomobench.metrics import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WIN

__all__ = ["CONVENTIONS", "STATISTICS", "Report", "format_value", "jsonable", "summarise"]

STATISTICS = ("mean", "std", "median", "min", "max")
"""The statistics of a metric over a split's samples, in the order reports print them."""

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
    scale: int | None = None
    crop_border: int | None = None
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
        ``baseline``, ``scale`` and ``crop_border`` (super-resolution: the factor and the
        border cropped before scoring; ``null`` for reconstruction), ``conventions``,
        ``metrics`` (per metric: ``higher_is_better``,
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
            "report_format": 3,
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
            "scale": self.scale,
            "crop_border": self.crop_border,
            "conventions": self.conventions,
            "metrics": metrics,
            "per_sample": per_sample,
            "per_channel": per_channel,
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` (atomically); return the path."""
        text = json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"
        return write_text_atomically(path, text)

    def write_csv(self, path: str | Path) -> Path:
        """One row per sample: its index, then each metric of the submission and the
        baseline (columns ``submission_psnr``, …, ``fbp_psnr``, …). Infinity is ``inf``."""
        columns = {f"submission_{name}": values for name, values in self.scores.items()}
        if self.baseline_scores is not None:
            columns |= {f"{self.baseline}_{k}": v for k, v in self.baseline_scores.items()}
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["index", *columns])
        for index in range(self.n):
            writer.writerow([index, *(repr(float(v[index])) for v in columns.values())])
        return write_text_atomically(path, text.getvalue())

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
        title = f"{self.library} · split {self.split} · n = {self.n}"
        if self.scale is not None:
            title += f" · super-resolution ×{self.scale}, border {self.crop_border} cropped"
        table = Table(title=title, caption=caption)
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

