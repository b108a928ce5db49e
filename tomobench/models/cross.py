"""Train on A, test on B: every trained run scored on one split of every library, beside
FBP on the same samples.

The table of the 2020 report's lesson (§7.2): a learned reconstruction is only as good as
the match between its training data and what it is asked to reconstruct. Each run is scored
on each library whose geometry and image size its model takes; a run whose model cannot take
a library's sinograms gets no cell there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tomobench._atomic import write_text_atomically
from tomobench.metrics import METRICS
from tomobench.models.errors import RunError
from tomobench.models.predict import check_split, load_run, reconstruct_split
from tomobench.report import CONVENTIONS, format_value, jsonable, summarise
from tomobench.score import per_sample_scores
from tomobench.store import open_library

__all__ = ["CrossTable", "cross"]


@dataclass(frozen=True)
class CrossTable:
    """Scores of methods (trained runs, then FBP) on one split of several libraries.

    ``methods`` are dicts with ``name``, ``trained_on`` (a library name, ``None`` for FBP)
    and ``run`` (the run folder, ``None`` for FBP); ``libraries`` dicts with ``name``,
    ``path``, ``recipe_sha256`` and ``n``. ``cells[(method, library)]`` (indices) maps each
    metric to its statistics (:func:`~tomobench.report.summarise`); a missing key is a run
    whose model does not take that library.
    """

    split: str
    methods: tuple[dict, ...]
    libraries: tuple[dict, ...]
    cells: dict[tuple[int, int], dict[str, dict[str, float]]]

    def to_json(self) -> dict:
        from tomobench import __version__

        return {
            "tomobench_version": __version__,
            "split": self.split,
            "conventions": CONVENTIONS,
            "libraries": list(self.libraries),
            "methods": list(self.methods),
            "scores": [
                {
                    "method": self.methods[m]["name"],
                    "run": self.methods[m]["run"],
                    "trained_on": self.methods[m]["trained_on"],
                    "library": self.libraries[b]["name"],
                    "metrics": {name: jsonable(stats) for name, stats in cell.items()},
                }
                for (m, b), cell in sorted(self.cells.items())
            ],
        }

    def write_json(self, path: str | Path) -> Path:
        return write_text_atomically(path, json.dumps(self.to_json(), indent=2) + "\n")

    def _cell(self, method: int, library: int, metric: str) -> str:
        cell = self.cells.get((method, library))
        if cell is None:
            return "–"
        unit = METRICS[metric].unit
        stats = cell[metric]
        return f"{format_value(stats['mean'], unit)} ± {format_value(stats['std'], unit)}"

    def _heading(self, metric: str) -> str:
        unit = f" ({METRICS[metric].unit})" if METRICS[metric].unit else ""
        arrow = "↑" if METRICS[metric].higher_is_better else "↓"
        return f"{metric}{unit} {arrow}"

    def markdown(self) -> str:
        """One Markdown table per metric: a row per method, a column per library; cells
        are mean ± std (population) over the split's samples."""
        names = [library["name"] for library in self.libraries]
        parts = []
        for metric in METRICS:
            lines = [
                f"{self._heading(metric)}, split {self.split}, mean ± std over the samples:",
                "",
                "| method | trained on | " + " | ".join(names) + " |",
                "|---|---|" + "---:|" * len(names),
            ]
            for m, method in enumerate(self.methods):
                cells = [self._cell(m, b, metric) for b in range(len(names))]
                trained = method["trained_on"] or "–"
                lines.append(f"| {method['name']} | {trained} | " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
        return "\n\n".join(parts) + "\n"

    def write_markdown(self, path: str | Path) -> Path:
        return write_text_atomically(path, self.markdown())

    def tables(self):
        """:class:`rich.table.Table` objects, one per metric (for the terminal)."""
        from rich.table import Table

        tables = []
        for metric in METRICS:
            table = Table(title=f"{self._heading(metric)} · split {self.split}")
            table.add_column("method")
            table.add_column("trained on")
            for library in self.libraries:
                table.add_column(f"{library['name']} (n = {library['n']})", justify="right")
            for m, method in enumerate(self.methods):
                cells = [self._cell(m, b, metric) for b in range(len(self.libraries))]
                table.add_row(method["name"], method["trained_on"] or "–", *cells)
            tables.append(table)
        return tables


def cross(
    runs,
    libraries,
    *,
    split: str = "test",
    fbp_filters=("ram-lak",),
) -> CrossTable:
    """Score every run folder of ``runs`` on split ``split`` of every library of
    ``libraries``, and FBP with each filter of ``fbp_filters`` on the same samples.

    Raises :class:`~.errors.RunError` for a folder without a trained model or a library
    that no run can take, and the errors of :func:`~tomobench.store.open_library`.
    """
    from tomobench import baselines

    runs, paths = [Path(run) for run in runs], [Path(path) for path in libraries]
    if not runs or not paths:
        msg = "cross needs at least one run folder and one library"
        raise RunError(msg)
    loaded = [load_run(run) for run in runs]
    methods = [
        {"name": model.name, "trained_on": _trained_on(run), "run": str(run)}
        for run, (model, _) in zip(runs, loaded)
    ]
    _disambiguate(methods)
    first_fbp = len(methods)
    methods += [
        {"name": f"FBP ({name})", "trained_on": None, "run": None} for name in fbp_filters
    ]
    cells: dict[tuple[int, int], dict] = {}
    described = []
    for b, path in enumerate(paths):
        with open_library(path) as library:
            check_split(library, split)
            images = library[f"{split}/images"][...]
            described.append(
                {
                    "name": library.recipe.name,
                    "path": str(path),
                    "recipe_sha256": library.recipe_sha256,
                    "n": int(images.shape[0]),
                }
            )
            for m, (model, normalisation) in enumerate(loaded):
                try:
                    output = reconstruct_split(model, normalisation, library, split=split)
                except RunError:
                    continue  # this model does not take this library's shapes
                cells[(m, b)] = _summary(images, output)
            if not any((m, b) in cells for m in range(len(loaded))):
                msg = f"{path}: no run's model takes this library's sinograms and images"
                raise RunError(msg)
            for offset, name in enumerate(fbp_filters):
                output = baselines.run("fbp", library, split=split, filter=name)
                cells[(first_fbp + offset, b)] = _summary(images, output)
    return CrossTable(
        split=split, methods=tuple(methods), libraries=tuple(described), cells=cells
    )


def _summary(images, output) -> dict[str, dict[str, float]]:
    return {name: summarise(values) for name, values in per_sample_scores(images, output).items()}


def _trained_on(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text())["library"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _disambiguate(methods: list[dict]) -> None:
    """Methods of equal model name and training library are told apart by their run folder."""
    keys = [(method["name"], method["trained_on"]) for method in methods]
    for method, key in zip(methods, keys):
        if keys.count(key) > 1:
            method["name"] = f"{method['name']} ({Path(method['run']).name})"
