"""A build's chunks computed on a dask.distributed cluster: one that the build starts on
this machine (``LocalCluster``), or one already running elsewhere (a scheduler's address).

Every chunk is one task (:func:`chunk_task`). Its workers write the chunk themselves where
the store takes writes from other processes (Zarr); otherwise they hand its arrays back, and
this process writes them (HDF5). A task returns an error meant for the user as its value, so
that the build ends with that one line; anything else it raises is a bug, raised as it is.

The workers of a cluster that the build starts share this machine's files and environment.
Those of a remote cluster may share nothing but the output: the source's inputs (a DIV2K
image, a reconstructed slice, a masks array) are read here and sent to them
(``Client.scatter``), once each, and their own cache serves only the projector's matrix.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tomobench import sources
from tomobench.chunk import make_chunk
from tomobench.errors import StoreError, TomobenchError
from tomobench.partial import write_errors
from tomobench.recipe import Recipe
from tomobench.store import open_store
from tomobench.store.base import Store

Task = tuple[str, int, int, int]
"""(split, chunk index, first sample, stop)."""

# dask settings of the clusters a build starts, each kept because benchmarks/bench_cluster.py
# shows, in one run against dask's defaults, that it pays (docs/benchmarks.md)
KEPT_HEAP = {"MALLOC_MMAP_THRESHOLD_": 64 * 2**20, "MALLOC_TRIM_THRESHOLD_": 128 * 2**20}
"""Worker environment: arrays below 64 MiB come from the heap and up to 128 MiB of freed heap
is kept. dask's default (``MALLOC_TRIM_THRESHOLD_=65536``) hands freed memory back at once,
and every chunk then faults its arrays' pages in anew."""
QUIET_HOUSEKEEPING = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "2s",
    "distributed.scheduler.work-stealing": False,
    "distributed.scheduler.active-memory-manager.start": False,
}
"""Nobody watches a build's dashboard: no statistical profiler, slower monitors, no work
stealing or memory manager (tasks are alike and results leave at once). The CPU they take
is the workers' on a small machine."""


def local_settings() -> dict:
    """The dask settings (``dask.config.set``) a build starts its cluster with."""
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    return {"distributed.nanny.pre-spawn-environ": environ | KEPT_HEAP, **QUIET_HOUSEKEEPING}


@contextmanager
def connect(workers: int, scheduler: str | None) -> Iterator:
    """A dask client: of the scheduler at ``scheduler``, or of a cluster of ``workers``
    single-threaded processes started here (and stopped on leaving)."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as error:  # ValueError: a bad address
            msg = f"cannot reach the dask scheduler at {scheduler}: {error}"
            raise StoreError(msg) from None
        with client:  # its tasks wait for workers, which may join later (batch jobs)
            yield client
        return
    # Ctrl-C is for this process, which then stops the cluster: workers started while
    # SIGINT is ignored keep ignoring it (the preload does the same for any worker that dask
    # starts again later)
    import dask

    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with dask.config.set(local_settings()):  # read as the cluster starts
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # the scheduler serves HTTP even without a dashboard, by default on port 8787,
                # and warns if that is taken: any free port of the loopback interface will do
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                # the build reports every error of a task itself
                silence_logs=logging.CRITICAL,
                preload=["tomobench._dask_worker"],
            )
    finally:
        signal.signal(signal.SIGINT, handler)
    with cluster, Client(cluster) as client:
        yield client


def run(
    client,
    store: Store,
    recipe: Recipe,
    todo: list[Task],
    backends: dict[str, str],
    *,
    remote: bool,
    advance: Callable[[int], None],
) -> None:
    """Compute the chunks of ``todo`` on the workers of ``client`` and have each written
    into ``store`` (and flagged) as it comes back."""
    from distributed import KilledWorker, as_completed

    target = (str(store.path), store.format) if store.parallel_writes else None
    if target is not None and remote:
        _check_workers_see(client, store.path)
    shipped: dict[tuple, object] = {}  # key of an input → its future on the cluster
    users: dict[tuple, int] = {}  # key of an input → tasks not yet done that draw from it
    futures, tasks, drawn_from = [], {}, {}
    for task in todo:
        split, _, start, stop = task
        materials, keys = None, None
        if remote:
            keys = sources.inputs(recipe.source, split, start, stop)
            if keys is not None:
                for key in dict.fromkeys(keys.values()):
                    if key not in shipped:
                        value = sources.load_input(recipe.source, key)
                        shipped[key] = client.scatter(value, hash=False)
                    users[key] = users.get(key, 0) + 1
                materials = {index: shipped[key] for index, key in keys.items()}
        future = client.submit(
            chunk_task, recipe, task, backends[split], materials, target, pure=False
        )
        futures.append(future)
        tasks[future.key] = task
        drawn_from[future.key] = set(keys.values()) if keys is not None else set()
    try:
        for future in as_completed(futures):
            split, index, start, stop = tasks[future.key]
            try:
                result = future.result()  # a task whose worker was lost is run again
            except KilledWorker:
                msg = (
                    f"chunk {index} of split {split} ended the dask worker that ran it, "
                    "each time it was tried (out of memory?): use fewer workers per machine "
                    "or a smaller output.chunk; the partial library is kept, run the same "
                    "build again to resume"
                )
                raise StoreError(msg) from None
            future.release()
            for key in drawn_from.pop(future.key):
                users[key] -= 1
                if not users[key]:  # no task left needs it: the cluster may let it go
                    del shipped[key]
            if isinstance(result, TomobenchError):
                raise result
            if result is not None:
                with write_errors(store):
                    store.write_chunk(split, index, start, result)
            advance(stop - start)
    finally:
        client.cancel(futures)


def chunk_task(
    recipe: Recipe, task: Task, backend: str, materials: dict | None, target: tuple | None
):
    """On a worker: the arrays of one chunk; or, given the ``target`` store (path and
    format), None once the chunk is written there and flagged. An error meant for the user
    is returned, not raised."""
    split, index, start, stop = task
    try:
        arrays = make_chunk(recipe, split, start, stop, backend=backend, materials=materials)
        if target is None:
            return arrays
        store = open_store(Path(target[0]), "r+", format=target[1])
        with write_errors(store):
            store.write_chunk(split, index, start, arrays)
            store.close()
    except TomobenchError as error:
        return error
    return None


def _check_workers_see(client, path: Path) -> None:
    """:class:`StoreError` unless every worker of ``client`` sees the partial library at
    ``path``, which they write into."""
    import os

    seen = client.run(os.path.isdir, str(path))
    blind = sorted(worker for worker, found in seen.items() if not found)
    if blind:
        others = f" and {len(blind) - 1} more" if len(blind) > 1 else ""
        msg = (
            f"dask worker {blind[0]}{others} cannot see {path}: the workers write a Zarr "
            "library themselves, so put it on storage that every worker shares, or build "
            "HDF5, which this process writes"
        )
        raise StoreError(msg)
