"""``build()``: a library from a recipe, composed of the chunk's science
(:mod:`tomobench.chunk`), the library's life while it is built (:mod:`tomobench.partial`)
and, for a parallel build, the cluster (:mod:`tomobench.cluster`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from tomobench import cluster, partial, sources
from tomobench.chunk import make_chunk
from tomobench.errors import RecipeError
from tomobench.physics.geometry import from_recipe
from tomobench.physics.projector import resolve_backend
from tomobench.recipe import Recipe, load_recipe
from tomobench.store.format import chunk_bounds


def build(
    recipe: Recipe | str | Path,
    out: str | Path | None = None,
    *,
    format: str | None = None,
    chunk: int | None = None,
    splits: Iterable[str] | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
) -> Path:
    """Build (or finish) the library of ``recipe`` at ``out`` and return its path.

    ``format`` and ``chunk`` override the recipe's ``output``; the format otherwise follows
    ``out``'s suffix. ``splits`` limits the build to some splits (more can be added later to
    the same library). ``workers`` > 1 starts a local dask.distributed cluster of that many
    single-threaded processes; ``scheduler`` (``tcp://host:port``) uses an existing one.
    Sample *i* of a split is the same, byte for byte, however it is built
    (:mod:`tomobench.chunk`); an interrupted build resumes (:mod:`tomobench.partial`).
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if workers < 1:
        msg = f"workers must be >= 1, got {workers}"
        raise RecipeError(msg)
    if scheduler is None and workers > (cpus := usable_cpus()):
        # each worker is a single-threaded process that computes at full speed: more of them
        # than CPUs only share the CPUs, and each holds its own projector in memory
        warnings.warn(
            f"workers {workers} capped at {cpus}, the CPUs this process may use",
            WorkersCapped,
            stacklevel=2,
        )
        workers = cpus
    path, recipe = partial.target(recipe, out, format=format, chunk=chunk)
    wanted = partial.wanted_splits(recipe, splits)
    backends = {
        split: resolve_backend(
            recipe.geometry.backend,
            geometry=from_recipe(recipe),
            model=recipe.geometry.projector,
            split=split,
        )
        for split in wanted
    }
    sources.prepare(recipe.source)  # fetches and preprocesses files, once, before any task
    sources.check_counts(recipe.source, {split: recipe.splits[split] for split in wanted})
    with partial.locked(path):
        store, recipe = partial.open_for_build(path, recipe, backends, wanted)
        if store is None:
            return path
        try:
            todo = [
                (split, index, *chunk_bounds(recipe.splits[split], recipe.output.chunk, index))
                for split in wanted
                for index in np.flatnonzero(~partial.written(store, recipe, split)).tolist()
            ]
            with _progress_bar(progress, recipe, todo, wanted) as advance:
                if (workers == 1 and scheduler is None) or not todo:
                    for split, index, start, stop in todo:
                        arrays = make_chunk(recipe, split, start, stop, backend=backends[split])
                        with partial.write_errors(store):
                            store.write_chunk(split, index, start, arrays)
                        advance(stop - start)
                else:
                    with cluster.connect(workers, scheduler) as client:
                        cluster.run(
                            client, store, recipe, todo, backends,
                            remote=scheduler is not None, advance=advance,
                        )
            partial.finish(store, path, recipe, wanted)
        finally:
            with suppress(Exception):
                store.close()
    return path


class WorkersCapped(UserWarning):
    """A build asked for more local workers than this process has CPUs."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@contextmanager
def _progress_bar(enabled: bool, recipe: Recipe, todo: list, wanted: list[str]):
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    total = sum(recipe.splits[split] for split in wanted)
    remaining = sum(stop - start for _, _, start, stop in todo)
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"building {recipe.name}", total=total, completed=total - remaining)
        yield lambda n: bar.advance(task, n)
