"""The quick start as one call: build the demo library, score FBP on it, draw a figure."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tomobench.report import Report

__all__ = ["DemoResult", "demo"]


@dataclass(frozen=True)
class DemoResult:
    """What :func:`demo` made, all under its folder: the library, FBP (hann filter) of its
    test split as a submission, that submission's score report (beside FBP with the ram-lak
    filter) and its JSON file, the figure, and the seconds the build took."""

    library: Path
    submission: Path
    report: Report
    report_path: Path
    figure: Path
    build_seconds: float


def demo(folder: str | Path = "tomobench-demo", *, progress: bool = False) -> DemoResult:
    """Build the published recipe ``demo`` into ``FOLDER/demo.h5`` (resumed, or kept as it
    is, if a build of it is there), reconstruct its test split with FBP (hann filter) into
    ``FOLDER/fbp-hann.npy``, score that beside FBP (ram-lak) into ``FOLDER/fbp-hann.json``,
    and draw four samples into ``FOLDER/demo.png``. ``progress`` shows the build's progress
    bar. What ``tomobench demo`` runs."""
    from tomobench import baselines
    from tomobench.builder import build
    from tomobench.recipe import published_recipes
    from tomobench.score import score, write_submission
    from tomobench.show import show
    from tomobench.store import open_library

    folder = Path(folder)
    started = time.perf_counter()
    library = build(published_recipes()["demo"], folder / "demo.h5", progress=progress)
    seconds = time.perf_counter() - started
    with open_library(library) as opened:
        hann = baselines.run("fbp", opened, filter="hann")
    submission = write_submission(folder / "fbp-hann.npy", hann)
    report = score(submission, library)
    report_path = report.write_json(folder / "fbp-hann.json")
    figure = show(library, [submission], samples=4, out=folder / "demo.png")
    return DemoResult(library, submission, report, report_path, figure, seconds)
