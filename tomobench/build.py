"""Build a library from a recipe: one dask task per chunk of samples, resumable.

Sample *i* of split *s* draws every random number from
``numpy.random.SeedSequence([recipe.seed, split_id, i])`` (split ids: train 0, val 1, test 2):
first its ground truth, then its noise, in the recipe's order. A library is therefore the
same, byte for byte, whatever the chunking, the number of workers or the storage format.

While it runs, a build lives at ``PATH.partial`` and flags each chunk once written; it is
renamed to ``PATH`` when every chunk is there. Run the same build again after an
interruption (even ``kill -9``) and it writes only the missing chunks.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from tomobench import sources
from tomobench.errors import RecipeError, StoreError
from tomobench.physics import noise as noise_ops
from tomobench.physics.geometry import from_recipe
from tomobench.physics.projector import get_projector, resolve_backend
from tomobench.physics.resample import area_average, downsample
from tomobench.recipe import SPLIT_IDS, SPLITS, Recipe, load_recipe
from tomobench.store import Library, identity, open_library, open_store, split_backends
from tomobench.store.format import (
    FORMAT_VERSION,
    array_specs,
    chunk_bounds,
    chunk_count,
    format_of,
    partial_path,
)
from tomobench.store.hdf5 import Placement, write_placed

# -- the work of one chunk ------------------------------------------------------------------


def sample_rngs(recipe: Recipe, split: str, start: int, stop: int) -> list[np.random.Generator]:
    """One generator per sample, seeded by (recipe seed, split id, sample index)."""
    split_id = SPLIT_IDS[split]
    return [
        np.random.default_rng(np.random.SeedSequence([recipe.seed, split_id, index]))
        for index in range(start, stop)
    ]


def draw_samples(
    recipe: Recipe, split: str, start: int, rngs: list[np.random.Generator]
) -> dict[str, np.ndarray]:
    """Ground truth of samples ``start``, ``start + 1``, … of ``split`` (one per generator):
    ``images`` (n, H, W) or (n, H, W, C) float32 in [0, 1], and any other array the source
    makes beside them (phase maps, …). With ``geometry.oversample`` k > 1, ``images`` are
    rendered k× finer: their area averages over k × k blocks are the ground truth."""
    draw = sources.sampler(recipe.source, split, recipe.geometry.oversample)
    drawn = [draw(start + offset, rng) for offset, rng in enumerate(rngs)]
    if not isinstance(drawn[0], tuple):
        return {"images": np.stack(drawn)}
    images, extras = zip(*drawn)
    return {"images": np.stack(images)} | {
        name: np.stack([extra[name] for extra in extras]) for name in extras[0]
    }


def draw_images(
    recipe: Recipe, split: str, start: int, rngs: list[np.random.Generator]
) -> np.ndarray:
    """Only the ``images`` of :func:`draw_samples`."""
    return draw_samples(recipe, split, start, rngs)["images"]


def project(recipe: Recipe, images: np.ndarray, *, backend: str) -> np.ndarray:
    """Clean sinograms (n, A, D) float32 of a batch of ground-truth images (rendered
    ``geometry.oversample`` times finer), or (n, A, D, C) of hyperspectral cubes
    (n, H, W, C): every channel is projected, a cube at a time."""
    geometry = from_recipe(recipe)
    projector = get_projector(geometry, model=recipe.geometry.projector, backend=backend)
    if images.ndim == 3:
        return projector.forward(images)
    count, _, _, channels = images.shape
    sinograms = np.empty((count, *geometry.sinogram_shape, channels), dtype=np.float32)
    for cube, cube_sinograms in zip(images, sinograms):
        projector.forward_channels(cube, out=cube_sinograms)
    return sinograms


def corrupt(
    recipe: Recipe, sinograms: np.ndarray, rngs: list[np.random.Generator]
) -> np.ndarray:
    """The recipe's noise, in order, each sample drawing from its own generator."""
    out = sinograms.copy() if recipe.noise else sinograms
    for op in recipe.noise:
        for index, rng in enumerate(rngs):
            if op.kind == "poisson":
                attenuation = op.attenuation or 1.0 / recipe.image_size
                out[index] = noise_ops.poisson(
                    out[index],
                    photons=op.photons,
                    attenuation=attenuation,
                    min_counts=op.min_counts,
                    rng=rng,
                )
            elif op.kind == "gaussian":
                out[index] = noise_ops.gaussian(
                    out[index], sigma=op.sigma, relative=op.relative, rng=rng
                )
            elif op.kind == "counting":
                out[index] = noise_ops.counting(out[index], counts=op.counts, rng=rng)
            else:  # air scatter: the same hump in 2θ at every angle and detector pixel
                peak = float(out[index].max())
                out[index] = out[index] + op.level * peak * _air_hump(recipe, op)
    if recipe.noise and not np.isfinite(out).all():
        kinds = ", ".join(op.kind for op in recipe.noise)
        msg = (
            f"recipe {recipe.name}: its noise ({kinds}) makes sinogram values too large for "
            "float32; lower its sigma or counts"
        )
        raise RecipeError(msg)
    return out


def _air_hump(recipe: Recipe, op) -> np.ndarray:
    """Unit-height Gaussian over the recipe's 2θ axis (C,), float32."""
    low, high = recipe.source.two_theta
    centre = low + 0.1 * (high - low) if op.center_deg is None else op.center_deg
    width = 0.5 * (high - low) if op.fwhm_deg is None else op.fwhm_deg
    two_theta = np.linspace(low, high, recipe.source.channels)
    sigma = width / (2 * np.sqrt(2 * np.log(2)))
    return np.exp(-0.5 * ((two_theta - centre) / sigma) ** 2).astype(np.float32)


def make_chunk(
    recipe: Recipe, split: str, start: int, stop: int, *, backend: str
) -> dict[str, np.ndarray]:
    """Every array of samples ``start:stop`` of ``split``, named as in the library.

    With ``geometry.oversample`` k > 1 the sinograms are of the image rendered k× finer
    and the ground truth is its area average, so the data's forward model is not the one a
    reconstruction on the ground truth's grid uses."""
    rngs = sample_rngs(recipe, split, start, stop)
    drawn = draw_samples(recipe, split, start, rngs)
    rendered = drawn.pop("images")
    factor = recipe.geometry.oversample
    images = rendered if factor == 1 else area_average(rendered, factor).astype(np.float32)
    sinograms = corrupt(recipe, project(recipe, rendered, backend=backend), rngs)
    arrays = {"images": images, "sinograms": sinograms}
    for factor in recipe.downsample:
        arrays[f"images_x{factor}"] = downsample(images, factor)
    return arrays | drawn


def _write_zarr_chunk(path: str, recipe: Recipe, task: tuple, backend: str) -> None:
    """Worker side of a Zarr build: compute a chunk and write it straight to the store."""
    split, index, start, stop = task
    arrays = make_chunk(recipe, split, start, stop, backend=backend)
    store = open_store(Path(path), "r+", format="zarr")
    _guarded_write(store, split, index, start, arrays)


def _write_hdf5_chunk(
    path: str, placed: Placement, recipe: Recipe, task: tuple, backend: str
) -> None:
    """Worker side of an HDF5 build: compute a chunk and put its bytes at their places in the
    file; the process that holds the file open flags it written."""
    split, _, start, stop = task
    arrays = make_chunk(recipe, split, start, stop, backend=backend)
    if set(arrays) != set(placed.names):
        msg = f"chunk of {sorted(arrays)} but the library has {placed.names}"
        raise RuntimeError(msg)
    with _write_errors(Path(path)):
        write_placed(Path(path), placed, arrays)


def _compute_chunk(recipe: Recipe, task: tuple, backend: str) -> dict[str, np.ndarray]:
    """Worker side of an HDF5 build on a cluster (whose workers may not see the file), or
    of a file only h5py may write: compute a chunk and hand it to the process that holds
    the file."""
    split, _, start, stop = task
    return make_chunk(recipe, split, start, stop, backend=backend)


def _guarded_write(store, split: str, index: int, start: int, arrays: dict) -> None:
    with _write_errors(store.path, store.close):
        store.write_chunk(split, index, start, arrays)


@contextmanager
def _write_errors(path: Path, close=None):
    """A failed write (full disk, lost mount) becomes one line; the partial library stays.
    ``close`` closes the store the write went through."""
    try:
        yield
    except (OSError, RuntimeError, KeyError, ValueError) as error:  # h5py raises all four
        if close is not None:
            with suppress(Exception):
                close()
        text = str(error)
        found = re.search(r"error message = '([^']*)'", text)
        reason = "the disk is full" if getattr(error, "errno", None) == errno.ENOSPC else (
            found.group(1) if found else text.splitlines()[0] if text else type(error).__name__
        )
        msg = (
            f"cannot write {path}: {reason}; the partial library is kept, "
            "run the same build again to resume"
        )
        raise StoreError(msg) from None


# -- the build ------------------------------------------------------------------------------


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
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if workers < 1:
        msg = f"workers must be >= 1, got {workers}"
        raise RecipeError(msg)
    path, recipe = _target(recipe, out, format=format, chunk=chunk)
    wanted = _wanted_splits(recipe, splits)
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
    store, recipe = _open_for_build(path, recipe, backends, wanted)
    if store is None:
        return path
    try:
        flags = {split: _written(store, recipe, split) for split in wanted}
        todo = [
            (split, index, *chunk_bounds(recipe.splits[split], recipe.output.chunk, index))
            for split in wanted
            for index in np.flatnonzero(~flags[split]).tolist()
        ]
        if (workers == 1 and scheduler is None) or not todo:
            with _progress_bar(progress, recipe, todo, wanted) as advance:
                for task in todo:
                    split, index, start, stop = task
                    arrays = make_chunk(recipe, split, start, stop, backend=backends[split])
                    _guarded_write(store, split, index, start, arrays)
                    advance(stop - start)
        else:
            gpu = "astra-cuda" in backends.values()
            with _client(workers, scheduler, "astra-cuda" if gpu else "matrix") as client:
                with _progress_bar(progress, recipe, todo, wanted) as advance:
                    _run_distributed(client, store, recipe, todo, backends, scheduler, advance)
        missing = [split for split in wanted if not _written(store, recipe, split).all()]
        if missing:  # a bug, never a user error: refuse to call the library complete
            msg = f"build of {path} ended with chunks of {missing} unwritten"
            raise RuntimeError(msg)
        with _write_errors(store.path, store.close):
            store.drop_flags()
            store.set_attrs({"complete": True})
            store.close()
    finally:
        with suppress(Exception):
            store.close()
    os.replace(partial_path(path), path)
    return path


def _written(store, recipe: Recipe, split: str) -> np.ndarray:
    """Which chunks of ``split`` are written. A partial library holds a split's flags from
    its creation until every chunk is written; a partial without them was stopped while
    finishing (between dropping the flags and the rename), with every chunk there."""
    flags = store.flags(split)
    if flags is None:
        return np.ones(chunk_count(recipe.splits[split], recipe.output.chunk), dtype=bool)
    return flags


def _target(recipe: Recipe, out, *, format: str | None, chunk: int | None):
    if format is not None and format not in ("hdf5", "zarr"):
        msg = f"--format must be hdf5 or zarr, got {format!r}"
        raise RecipeError(msg)
    if out is None:
        format = format or recipe.output.format
        suffix = ".zarr" if format == "zarr" else ".h5"
        path = Path(f"{recipe.name}{suffix}")
    else:
        path = Path(out)
        named = format_of(path)
        if named is None:
            msg = f"--out {path}: name the library *.h5, *.hdf5 or *.zarr"
            raise RecipeError(msg)
        if format is not None and named != format:
            msg = f"--out {path} names a {named} library but --format is {format}"
            raise RecipeError(msg)
        format = named
    return path.absolute(), recipe.with_output(format=format, chunk=chunk)


def _wanted_splits(recipe: Recipe, splits: Iterable[str] | None) -> list[str]:
    available = [name for name in SPLITS if recipe.splits.get(name, 0) > 0]
    if splits is None:
        return available
    wanted = list(dict.fromkeys(splits))
    unknown = [name for name in wanted if name not in available]
    if unknown:
        msg = (
            f"split {unknown[0]!r} is not in recipe {recipe.name!r} "
            f"(it has {', '.join(available)})"
        )
        raise RecipeError(msg)
    return [name for name in SPLITS if name in wanted]


def _open_for_build(path: Path, recipe: Recipe, backends: dict[str, str], wanted: list[str]):
    """The store to write to, at ``PATH.partial``, and the recipe it was started with;
    ``(None, recipe)`` when ``PATH`` is already a complete library with every wanted split."""
    partial = partial_path(path)
    if path.exists():
        with open_library(path) as library:
            _check_same(library, recipe, backends)
            if set(wanted) <= set(library.splits):
                return None, recipe
            built, chunk = library.splits, library.recipe.output.chunk
            counts = {split: library.recipe.splits[split] for split in built}
        # add splits to a finished library: it becomes partial again, its splits all written
        store = open_store(path, "r+")
        with _write_errors(store.path, store.close):
            for split in built:
                store.mark_written(split, chunk_count(counts[split], chunk))
            store.close()
        os.replace(path, partial)
    existed = partial.exists() and _usable_partial(partial)
    if existed:
        with open_library(partial) as library:
            _check_same(library, recipe, backends)
            recipe = library.recipe  # its chunking, which its flags count in
        store = open_store(partial, "r+")
    else:
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            msg = f"cannot create {partial.parent}: {error.strerror or error}"
            raise StoreError(msg) from None
        store = open_store(partial, "w-")  # a path that cannot be created is told first
        if store.format == "hdf5":
            try:
                _check_space(partial, recipe, wanted)
            except StoreError:
                store.close()
                partial.unlink()
                raise
    with _write_errors(store.path, store.close):
        _initialise(store, recipe, backends, wanted, new=not existed)
    return store, recipe


def _initialise(
    store, recipe: Recipe, backends: dict[str, str], wanted: list[str], *, new: bool
) -> None:
    """Write a new library's attributes and angles, and the arrays of splits it lacks; the
    ``backend`` attribute maps every split to the backend that makes its sinograms, and
    ``identity`` every split to its identity's digest (:meth:`Library.identity`)."""
    built = {} if new else split_backends(store.attrs.get("backend"))
    built = {split: built[split] for split in store.splits() if split in built}
    backend = built | {split: backends[split] for split in wanted}
    identities = {
        split: identity(recipe.sha256(), name, FORMAT_VERSION)["sha256"]
        for split, name in backend.items()
    }
    split_attrs = {
        "backend": json.dumps(backend, sort_keys=True),
        "identity": json.dumps(identities, sort_keys=True),
    }
    if not new:
        store.set_attrs({"complete": False, **split_attrs})
    else:
        from tomobench import __version__

        store.set_attrs(
            {
                "tomobench_format": FORMAT_VERSION,
                "tomobench_version": __version__,
                "recipe": recipe.canonical_json(),
                "recipe_sha256": recipe.sha256(),
                "task": recipe.task,
                **split_attrs,
                "complete": False,
                **sources.root_attrs(recipe.source),
            }
        )
        store.write_root_array("angles", from_recipe(recipe).angle_values)
        for name, values in sources.root_arrays(recipe.source).items():
            store.write_root_array(name, values)
    existing = set(store.splits())
    for split in wanted:
        if split not in existing:
            count = recipe.splits[split]
            store.create_split(
                split, array_specs(recipe, count), chunk_count(count, recipe.output.chunk)
            )


def _check_space(path: Path, recipe: Recipe, wanted: list[str]) -> None:
    """An HDF5 library takes all its space when created: say so at once if it cannot."""
    needed = sum(
        int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
        for split in wanted
        for spec in array_specs(recipe, recipe.splits[split])
    )
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        msg = (
            f"not enough disk space for {path.name.removesuffix('.partial')}: it needs "
            f"{needed / 1024**3:.2f} GiB, {path.parent} has {free / 1024**3:.2f} GiB free"
        )
        raise StoreError(msg)


def _usable_partial(partial: Path) -> bool:
    """Whether a partial library can be resumed; one that cannot even be opened (its
    creation failed) holds no finished chunk and is removed."""
    try:
        with open_library(partial) as library:
            for split in library.splits:
                library.chunks_done(split)
    except (StoreError, OSError, RuntimeError, KeyError, ValueError):
        if partial.is_dir():
            shutil.rmtree(partial)
        else:
            partial.unlink()
        return False
    return True


def _check_same(library: Library, recipe: Recipe, backends: dict[str, str]) -> None:
    if library.recipe_sha256 != recipe.sha256():
        msg = (
            f"{library.path} holds a library of another recipe "
            f"({library.recipe.name}, sha256 {library.recipe_sha256[:12]}…); "
            "choose another --out or remove it"
        )
        raise StoreError(msg)
    if int(library.attrs.get("tomobench_format", 0)) != FORMAT_VERSION:
        msg = (
            f"{library.path} is a library of format {library.attrs.get('tomobench_format')}, "
            f"made by another tomobench; this one builds format {FORMAT_VERSION}: "
            "choose another --out or remove it"
        )
        raise StoreError(msg)
    for split, backend in backends.items():
        started = library.backend(split) if split in library.splits else None
        if started is not None and started != backend:
            msg = (
                f"{library.path}: split {split} was started with projector backend {started} "
                f"but this machine resolves {recipe.geometry.backend!r} to {backend}; "
                "set geometry.backend in the recipe or remove the library"
            )
            raise StoreError(msg)


def _run_distributed(client, store, recipe, todo, backends, scheduler, advance) -> None:
    """Compute the chunks of ``todo`` on the workers of ``client``, a few per worker at a
    time, and flag (or write) each in ``store`` as it comes back. A task that wrote its
    chunk itself is not asked for its result (None): fetching it from the worker would
    take this process a third of what dask spends on the task."""
    from distributed import as_completed

    window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    tasks: Iterator[tuple] = iter(todo)
    submitted: dict[str, tuple] = {}  # future's key -> (chunk, whether it comes back here)

    def submit(task):
        path = str(store.path)
        split, _, start, stop = task
        backend = backends[split]
        placed = None
        if store.format == "hdf5" and scheduler is None:  # workers here write into the file
            with _write_errors(store.path, store.close):
                placed = store.placement(split, start, stop)
        comes_back = store.format == "hdf5" and placed is None
        if store.format == "zarr":
            future = client.submit(_write_zarr_chunk, path, recipe, task, backend, pure=False)
        elif comes_back:
            future = client.submit(_compute_chunk, recipe, task, backend, pure=False)
        else:
            future = client.submit(
                _write_hdf5_chunk, path, placed, recipe, task, backend, pure=False
            )
        submitted[future.key] = (task, comes_back)
        return future

    running = as_completed([submit(task) for _, task in zip(range(window), tasks)])
    for future in running:
        (split, index, start, stop), comes_back = submitted.pop(future.key)
        if comes_back:
            arrays = future.result()
            future.release()
            _guarded_write(store, split, index, start, arrays)
        else:
            if future.status != "finished":
                # raises the task's error; or, for a task whose worker died after it ended
                # ("lost"), waits until dask has run it again, and its chunk is written
                future.result()
            future.release()
            if store.format == "hdf5":
                with _write_errors(store.path, store.close):
                    store.flag_written(split, index)
        advance(stop - start)
        following = next(tasks, None)
        if following is not None:
            running.add(submit(following))


@contextmanager
def _client(workers: int, scheduler: str | None, backend: str):
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as error:  # ValueError: a bad address
            msg = f"cannot reach the dask scheduler at {scheduler}: {error}"
            raise StoreError(msg) from None
        with client:
            yield client
        return
    # The settings hold while the workers start, and no longer: a worker that dask starts
    # again later (after a crash) is spawned.
    with dask.config.set(_local_worker_config(backend)):
        _preload_forkserver()
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # the scheduler serves HTTP (health checks, metrics) even without a dashboard,
            # on port 8787 unless told otherwise, and warns when a dashboard or another
            # build holds it: any free port of this machine's own interface will do
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
            preload=["tomobench._dask_worker"],  # Ctrl-C is for the build process
            # a worker forked from a fork server has the environment the server started
            # with; it is given this process's as it is now (TOMOBENCH_DATA_DIR, say)
            env=dict(os.environ),
        )
    with cluster, Client(cluster) as client:
        yield client


def _local_worker_config(backend: str) -> dict:
    """dask settings for the workers a build with projector ``backend`` starts itself.

    On Linux the workers are forked from a fork server (:func:`_preload_forkserver`), not
    spawned: they start with the modules a task needs imported already. A spawned worker
    imports dask, numpy, SciPy, h5py, ASTRA and tomobench anew: a cluster of two started in
    1.1-1.4 s, and its workers still imported ASTRA and tomobench at their first task; from
    the fork server, in 0.09-0.15 s (the first time in a process, the server's imports
    included, 1.7-2.2 s). They are never forked from the build process itself: it runs
    threads (dask's event loop, the threads that watch its processes, zarr's I/O loop), and
    a lock that one of them holds at the fork stays held in the child for ever. A worker
    forked while a thread here was writing a log line hung on its own first log line, and
    the build with it (twice in about 400 runs of a test's first parallel builds on a 2-core
    host, under pytest, whose log file is /dev/null). The fork server is a fresh interpreter
    with a single thread.

    Elsewhere (fork is unsafe on macOS and absent on Windows), where the workers project on
    a GPU (CUDA is not tried in a forked process here), and when dask starts a worker again,
    workers are spawned. dask gives its workers ``MALLOC_TRIM_THRESHOLD_=65536`` so that
    freed memory goes back to the system at once; with glibc's mmap for every large array,
    each chunk then page-faults its arrays in anew (about 34,000 faults a chunk of
    shapes-128, 40 % of its time). So arrays below 64 MiB stay on their heap, and up to
    128 MiB of free heap is kept. (dask sets these variables in the build process before it
    starts a worker, and they hold for the fork server too, which starts with the first
    worker.)

    The cluster's housekeeping is also slowed down, since nobody looks at a dashboard here and
    every CPU cycle it takes is one the workers lack: no statistical profiler (a stack sample
    every 10 ms), the event-loop watchdog every second instead of every 20 ms, system and
    memory monitors every few seconds, and no work stealing or active memory manager (the
    build submits a few tasks per worker and releases each result at once). Idle, the
    cluster of two workers then takes about 2 % of one core instead of 11 %.
    """
    config = {
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "5s",
        "distributed.worker.memory.monitor-interval": "2s",
        "distributed.scheduler.work-stealing": False,
        "distributed.scheduler.active-memory-manager.start": False,
    }
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.update({"MALLOC_MMAP_THRESHOLD_": 64 * 2**20, "MALLOC_TRIM_THRESHOLD_": 128 * 2**20})
    config["distributed.nanny.pre-spawn-environ"] = environ
    if sys.platform.startswith("linux") and backend != "astra-cuda":
        config["distributed.worker.multiprocessing-method"] = "forkserver"
    return config


# what a worker imports to run a chunk's task, imported once by the fork server (tomobench
# imports ASTRA, zarr and pooch only where they are used)
FORKSERVER_PRELOAD = (
    "distributed",
    "astra",
    "tomobench._dask_worker",
    "tomobench.build",
    "tomobench.datasets",
    "tomobench.store.zarr",
)


def _preload_forkserver() -> None:
    """Name the modules that the fork server imports when it starts (with the first worker
    of the first cluster of this process; later clusters use it as it is). dask names its
    own list (dask, numpy and the like, not tomobench; it imports them here to see which
    are installed, pandas too where it is) the first time it is asked for the fork
    server's context: it is asked first, and its list replaced."""
    from distributed.utils import get_mp_context

    context = get_mp_context()  # the method of the settings in force
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))


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
