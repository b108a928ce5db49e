"""Time a library build: its stages alone, whole builds, the 2020 loop, and peak memory.

Usage::

    python benchmarks/bench_build.py [--recipe shapes-128] [--n 2000] [--chunk 64]
        [--formats hdf5,zarr] [--n-loop 500] [--mem-sizes 1000,20000]
        [--mem-workers 1,2] [--skip-memory] [--tmpdir DIR] [--seed 0]

The recipe's splits are replaced by one ``test`` split of N samples; everything is written
into a temporary directory that is removed at the end. Parts, in order:

1. stages alone, per sample, over the N samples in chunks of ``--chunk``: seeding
   (``sample_rngs``), drawing (``draw_samples``, which ``draw_images`` wraps), projection
   (``project`` with the backend the recipe resolves to here; its projector, and matrix
   and its blocks, are made once before timing and that one-off time is reported apart), noise
   (``corrupt``), downsampling (``downsample`` for each of the recipe's factors) and
   writing (``open_store(path, "w-")``, ``create_split`` and ``write_chunk`` with the
   arrays just computed, into an HDF5 file
   laid out like the build's). The file written this way is the reference the builds are
   checked against;
2. ``build(..., workers=1)`` in this process, end to end, in HDF5 and in each of
   ``--formats``; each two-worker build below is compared with the one-worker build of its
   format. Before every whole build the projector made for the stages is let go, so that
   the build (or each of its workers) loads the cached matrix and cuts it into blocks, as
   in a fresh process;
3. the 2020 generator's per-image loop: ``skimage.draw.random_shapes`` then
   ``astra.create_sino`` with a CPU 'linear' projector, ``--n-loop`` images;
4. start-up and shut-down of a local dask cluster of 2 single-threaded worker processes
   (``LocalCluster`` + ``Client``, as the build makes it), timed alone;
5. ``build(..., workers=2)`` for each of ``--formats`` (start-up included);
6. the ceiling of this machine: the chunks computed (``make_chunk``: drawing, projection,
   noise, downsampling; nothing written, no dask) by one process, then split between two
   processes that run side by side (this script's ``--compute-only`` mode, started together
   after a warm-up chunk each). A two-worker build does all this work and more, so the
   second figure bounds what it can reach here;
7. peak memory of builds of each of ``--mem-sizes`` samples, each in a fresh subprocess
   (this script's ``--child`` mode), for each of ``--mem-workers``: the child's own peak
   RSS from ``os.wait4`` (read by a small launcher process: Linux carries a parent's RSS
   into a forked child's peak), the largest RSS of any one process of the tree polled with
   psutil every 0.1 s, and the peak of the summed RSS of the child and all its descendants
   (the dask workers), as RSS (shared pages counted in every process that maps them) and as
   PSS (a page shared by k processes counted 1/k in each); and the CPU seconds of the whole
   tree, as last polled.

Every library built is checked to be identical to the reference; nothing about speed is
asserted. BLAS/OpenMP thread counts are set to 1 before numpy is imported (dask sets them
for its workers too).
"""

from __future__ import annotations

import os

for _name in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_name] = "1"

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tomobench.builder import build
from tomobench.chunk import corrupt, draw_samples, project, sample_rngs
from tomobench.physics.geometry import from_recipe
from tomobench.physics.projector import get_projector, resolve_backend
from tomobench.physics.resample import area_average, downsample
from tomobench.recipe import Recipe, load_recipe
from tomobench.store import open_store
from tomobench.store.format import FORMAT_VERSION, array_specs, chunk_bounds, chunk_count

SPLIT = "test"
SUFFIX = {"hdf5": ".h5", "zarr": ".zarr"}
STAGES = ("seeding", "drawing", "projection", "noise", "downsampling", "writing")


def test_only(recipe: Recipe, n: int, chunk: int | None) -> Recipe:
    """The recipe with one ``test`` split of ``n`` samples (and ``chunk`` if given)."""
    data = recipe.model_dump()
    data["splits"] = {SPLIT: n}
    if chunk is not None:
        data["output"] = {**data["output"], "chunk": chunk}
    return Recipe.model_validate(data)


def backend_of(recipe: Recipe) -> str:
    return resolve_backend(
        recipe.geometry.backend, geometry=from_recipe(recipe), model=recipe.geometry.projector
    )


# -- 1. stages alone --------------------------------------------------------------------------


def time_stages(recipe: Recipe, path: Path) -> tuple[dict[str, float], float, str]:
    """Seconds spent in each stage over the whole split, the one-off projector set-up
    time, and the backend. Writes the reference library at ``path`` (HDF5)."""
    n, chunk = recipe.splits[SPLIT], recipe.output.chunk
    backend = backend_of(recipe)
    start = time.perf_counter()
    geometry, model = from_recipe(recipe), recipe.geometry.projector
    projector = get_projector(geometry, model=model, backend=backend)
    if backend == "matrix":  # builds and caches the matrix, then cuts it into blocks
        projector.forward(np.zeros((1, *geometry.rendered_shape), dtype=np.float32))
    setup = time.perf_counter() - start

    seconds = dict.fromkeys(STAGES, 0.0)
    clock = time.perf_counter

    t = clock()
    store = open_store(path, "w-")
    store.set_attrs(
        {"tomobench_format": FORMAT_VERSION, "recipe": recipe.canonical_json(), "complete": False}
    )
    store.write_root_array("angles", from_recipe(recipe).angle_values)
    store.create_split(SPLIT, array_specs(recipe, n), chunk_count(n, chunk))
    seconds["writing"] += clock() - t

    for index in range(chunk_count(n, chunk)):
        first, stop = chunk_bounds(n, chunk, index)
        t = clock()
        rngs = sample_rngs(recipe, SPLIT, first, stop)
        seconds["seeding"] += clock() - t
        t = clock()
        drawn = draw_samples(recipe, SPLIT, first, rngs)
        rendered = drawn.pop("images")  # finer than the ground truth with oversample > 1
        factor = recipe.geometry.oversample
        images = rendered if factor == 1 else area_average(rendered, factor).astype(np.float32)
        seconds["drawing"] += clock() - t
        t = clock()
        clean = project(recipe, rendered, backend=backend)
        seconds["projection"] += clock() - t
        t = clock()
        sinograms = corrupt(recipe, clean, rngs)
        seconds["noise"] += clock() - t
        t = clock()
        arrays = {"images": images, "sinograms": sinograms}
        for factor in recipe.downsample:
            arrays[f"images_x{factor}"] = downsample(images, factor)
        seconds["downsampling"] += clock() - t
        arrays |= drawn  # whatever else the source makes beside the images (none for shapes)
        t = clock()
        store.write_chunk(SPLIT, index, first, arrays)
        seconds["writing"] += clock() - t

    t = clock()
    store.drop_flags()
    store.set_attrs({"complete": True})
    store.close()
    seconds["writing"] += clock() - t
    return seconds, setup, backend


def assert_same(reference: Path, other: Path, chunk: int) -> None:
    """Every array of the split is equal, value for value, in both libraries."""
    mine, theirs = open_store(reference, "r"), open_store(other, "r")
    try:
        expected, got = mine.arrays(SPLIT), theirs.arrays(SPLIT)
        assert sorted(expected) == sorted(got), f"{other}: arrays {sorted(got)}"
        for name, array in expected.items():
            assert array.shape == got[name].shape, f"{other}/{name}: shape {got[name].shape}"
            for start in range(0, array.shape[0], 8 * chunk):
                a = np.asarray(array[start : start + 8 * chunk])
                b = np.asarray(got[name][start : start + 8 * chunk])
                assert np.array_equal(a, b), f"{other}/{name} differs from the stage pipeline"
    finally:
        mine.close()
        theirs.close()


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# -- 2./5. whole builds -----------------------------------------------------------------------


def time_build(recipe: Recipe, path: Path, workers: int) -> float:
    """Seconds of a whole build. This process's projector is let go first, so that the build
    (or each of its workers) loads the cached matrix and cuts it into blocks, as a build in
    a fresh process does."""
    get_projector.cache_clear()
    start = time.perf_counter()
    build(recipe, path, workers=workers)
    return time.perf_counter() - start


# -- 3. the 2020 loop -------------------------------------------------------------------------


def time_2020_loop(n: int, size: int, angles: np.ndarray, seed: int) -> float:
    """Images per second of random_shapes + astra.create_sino (CPU 'linear'), per image."""
    import astra
    from skimage.draw import random_shapes

    volume = astra.create_vol_geom(size, size)
    geometry = astra.create_proj_geom("parallel", 1.0, size, angles)
    projector = astra.create_projector("linear", geometry, volume)
    try:
        start = time.perf_counter()
        for index in range(n):
            rng = np.random.default_rng([seed, index])
            image, _ = random_shapes(
                (size, size),
                max_shapes=10,
                min_shapes=3,
                min_size=8,
                max_size=48,
                channel_axis=None,
                allow_overlap=True,
                rng=rng,
            )
            sinogram_id, _ = astra.create_sino(image, projector)
            astra.data2d.delete(sinogram_id)
        return n / (time.perf_counter() - start)
    finally:
        astra.projector.delete(projector)


# -- 4. cluster start-up ----------------------------------------------------------------------


def time_cluster(workers: int, backend: str) -> tuple[float, float]:
    """Seconds to start the build's own LocalCluster + Client (as a build starts it), and
    to close them."""
    from tomobench.cluster import connect

    del backend  # every build starts its cluster the same way
    start = time.perf_counter()
    with connect(workers, None) as client:
        client.wait_for_workers(workers)
        up = time.perf_counter() - start
        start = time.perf_counter()
    return up, time.perf_counter() - start


# -- 6. the ceiling: chunks computed in plain processes ----------------------------------------


def compute_only_main(args) -> None:
    """Child side: compute chunks ``--first`` to ``--last`` (exclusive) of the test split,
    from ``--start-at`` (a time.time() value) on, after a warm-up chunk; print the seconds."""
    from tomobench.chunk import make_chunk

    recipe = test_only(load_recipe(args.recipe), args.n, args.chunk)
    backend = backend_of(recipe)
    chunk = recipe.output.chunk
    make_chunk(recipe, SPLIT, 0, min(chunk, args.n), backend=backend)  # matrix, imports
    time.sleep(max(0.0, args.start_at - time.time()))
    start = time.perf_counter()
    for index in range(args.first, args.last):
        make_chunk(recipe, SPLIT, *chunk_bounds(args.n, chunk, index), backend=backend)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def time_compute_only(args, recipe: Recipe, processes: int) -> float:
    """Seconds for ``processes`` plain processes, side by side, to compute every chunk."""
    chunks = chunk_count(args.n, recipe.output.chunk)
    bounds = np.linspace(0, chunks, processes + 1).round().astype(int)
    start_at = time.time() + 8.0  # after every child has imported and warmed up
    command = [sys.executable, str(Path(__file__).resolve()), "--compute-only",
               "--recipe", args.recipe, "--n", str(args.n), "--start-at", str(start_at)]
    if args.chunk is not None:
        command += ["--chunk", str(args.chunk)]
    children = [
        subprocess.Popen(
            [*command, "--first", str(first), "--last", str(last)],
            stdout=subprocess.PIPE, text=True,
        )
        for first, last in zip(bounds[:-1], bounds[1:])
    ]
    seconds = []
    for child in children:
        output, _ = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"compute-only child failed ({child.returncode})")
        seconds.append(json.loads(output.strip().splitlines()[-1])["seconds"])
    return max(seconds)


# -- 7. peak memory in a fresh process --------------------------------------------------------


# Linux keeps a process's peak RSS across fork and exec: a child forked straight from this
# (large) process would report this process's RSS as its own peak. So children are started
# from a small launcher interpreter, which reads the build's rusage with wait4.
LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                  "user": usage.ru_utime, "sys": usage.ru_stime}))
"""


def run_child(args, n: int, workers: int, out: Path) -> dict:
    """Build N samples in a fresh interpreter; its wall time and peak memory (MiB)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if workers > 1 and psutil is None:
        return {"n": n, "workers": workers, "skipped": "psutil is not installed"}
    command = [
        sys.executable, "-c", LAUNCHER,
        sys.executable, str(Path(__file__).resolve()), "--child",
        "--recipe", args.recipe, "--n", str(n), "--workers", str(workers),
        "--child-out", str(out),
    ]
    if args.chunk is not None:
        command += ["--chunk", str(args.chunk)]
    start = time.perf_counter()
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    tree_peak = tree_pss_peak = own_peak = largest_peak = 0
    cpu: dict[int, float] = {}  # pid -> CPU seconds, as last polled
    while psutil is not None and launcher.poll() is None:
        total = total_pss = 0
        try:
            children = psutil.Process(launcher.pid).children()
            processes = [
                process for child in children for process in (child, *child.children(True))
            ]
        except psutil.NoSuchProcess:
            processes, children = [], []
        for process in processes:
            try:
                info = process.memory_full_info()  # rss, and pss from smaps on Linux
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += info.rss
            total_pss += getattr(info, "pss", 0)
            largest_peak = max(largest_peak, info.rss)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                cpu[process.pid] = times.user + times.system
            if process in children:
                own_peak = max(own_peak, info.rss)
        tree_peak = max(tree_peak, total)
        tree_pss_peak = max(tree_pss_peak, total_pss)
        time.sleep(0.1)
    output, _ = launcher.communicate()
    wall = time.perf_counter() - start
    report = json.loads(output.strip().splitlines()[-1])
    if launcher.returncode != 0 or report["code"] != 0:
        msg = f"child build of {n} samples with {workers} workers failed ({report['code']})"
        raise RuntimeError(msg)
    return {
        "n": n,
        "workers": workers,
        "wall": wall,
        "maxrss": report["maxrss_kib"] / 1024,  # ru_maxrss is in KiB on Linux
        "user": report["user"],
        "sys": report["sys"],
        "own_polled": own_peak / 2**20 if psutil is not None else None,
        "largest_polled": largest_peak / 2**20 if psutil is not None else None,
        "tree_cpu": sum(cpu.values()) if psutil is not None else None,
        "tree_polled": tree_peak / 2**20 if psutil is not None else None,
        "tree_pss": tree_pss_peak / 2**20 if tree_pss_peak else None,
    }


def child_main(args) -> None:
    recipe = test_only(load_recipe(args.recipe), args.n, args.chunk)
    build(recipe, Path(args.child_out), workers=args.workers)


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--recipe", default="shapes-128", help="recipe name or YAML path")
    parser.add_argument("--n", type=int, default=2000, help="samples in the test split")
    parser.add_argument(
        "--chunk", type=int, default=None, help="samples per chunk (default: the recipe's)"
    )
    parser.add_argument(
        "--formats", default="hdf5,zarr", help="formats of the workers=2 builds (hdf5, zarr)"
    )
    parser.add_argument("--n-loop", type=int, default=500, help="images of the 2020 loop")
    parser.add_argument(
        "--mem-sizes", default="1000,20000", help="sample counts of the peak-memory builds"
    )
    parser.add_argument(
        "--mem-workers", default="1,2", help="worker counts of the peak-memory builds"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the memory builds")
    parser.add_argument("--tmpdir", default=None, help="where to make the temporary directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 2020 loop's images")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--compute-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--last", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child_main(args)
        return
    if args.compute_only:
        compute_only_main(args)
        return

    formats = [value for value in args.formats.split(",") if value]
    for fmt in formats:
        if fmt not in SUFFIX:
            parser.error(f"--formats: unknown format {fmt!r} (hdf5, zarr)")
    mem_sizes = [int(value) for value in args.mem_sizes.split(",") if value]
    mem_workers = [int(value) for value in args.mem_workers.split(",") if value]

    recipe = test_only(load_recipe(args.recipe), args.n, args.chunk)
    n, chunk = args.n, recipe.output.chunk
    print(
        f"recipe {recipe.name}: {recipe.image_size}x{recipe.image_size}, "
        f"{recipe.geometry.angles} angles, noise {[op.kind for op in recipe.noise]}, "
        f"downsample {list(recipe.downsample)}; split {SPLIT} of {n} samples, chunk {chunk}; "
        f"{os.cpu_count()} CPUs"
    )

    tmp = Path(tempfile.mkdtemp(prefix="tomobench-bench-", dir=args.tmpdir))
    try:
        # 1. stages alone
        reference = tmp / "stages.h5"
        stages, setup, backend = time_stages(recipe, reference)
        stage_sum = sum(stages.values())
        print(f"projector backend: {backend}; one-off set-up (matrix build): {setup:.2f} s")

        # 2. whole builds, one worker, in process
        w1_by_format = {}
        for fmt in dict.fromkeys(["hdf5", *formats]):
            path = tmp / f"w1{SUFFIX[fmt]}"
            w1_by_format[fmt] = time_build(recipe, path, workers=1)
            assert_same(reference, path, chunk)
            remove(path)
        w1 = w1_by_format["hdf5"]

        # 3. the 2020 loop
        loop_rate = time_2020_loop(
            args.n_loop, recipe.image_size, from_recipe(recipe).angle_values, args.seed
        )

        # 4. cluster start-up alone (twice: the first start also warms the file cache)
        cluster_times = [time_cluster(2, backend) for _ in range(2)]

        # 5. whole builds, two workers
        w2 = {}
        for fmt in formats:
            path = tmp / f"w2{SUFFIX[fmt]}"
            w2[fmt] = time_build(recipe, path, workers=2)
            assert_same(reference, path, chunk)
            remove(path)
        remove(reference)

        # 6. the ceiling
        ceiling = {processes: time_compute_only(args, recipe, processes) for processes in (1, 2)}

        # 7. peak memory
        memory = []
        if not args.skip_memory:
            for workers in mem_workers:
                for size in mem_sizes:
                    out = tmp / f"mem-{workers}-{size}.h5"
                    memory.append(run_child(args, size, workers, out))
                    remove(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # -- report -----------------------------------------------------------------------------
    up = sorted(u for u, _ in cluster_times)
    down = sorted(d for _, d in cluster_times)
    startup, shutdown = up[0], down[0]
    print()
    print(f"{'stage (alone)':28s} {'ms/sample':>10s} {'share':>7s}")
    for name in STAGES:
        print(f"{name:28s} {1e3 * stages[name] / n:10.3f} {stages[name] / stage_sum:7.1%}")
    print(f"{'sum of stages':28s} {1e3 * stage_sum / n:10.3f}  ({n / stage_sum:.0f} samples/s)")

    print()
    print(f"{'run':44s} {'seconds':>8s} {'samples/s':>10s}")
    print(f"{'2020 loop (random_shapes + create_sino)':44s} {'':8s} {loop_rate:10.1f}")
    print(f"{'sum of stages':44s} {stage_sum:8.2f} {n / stage_sum:10.1f}")
    for fmt, seconds in w1_by_format.items():
        label = f"build workers=1 {fmt} (in process)"
        print(f"{label:44s} {seconds:8.2f} {n / seconds:10.1f}")
    for fmt, seconds in w2.items():
        label = f"build workers=2 {fmt} (start-up incl.)"
        print(f"{label:44s} {seconds:8.2f} {n / seconds:10.1f}")
        net = seconds - startup - shutdown
        print(
            f"{'  same, minus cluster start-up + shut-down':44s} {net:8.2f} {n / net:10.1f}"
        )
    for processes, seconds in ceiling.items():
        label = f"chunks computed by {processes} plain process{'es' if processes > 1 else ''}"
        print(f"{label:44s} {seconds:8.2f} {n / seconds:10.1f}")
    print(
        "cluster start-up (LocalCluster 2x1 + Client), alone: "
        + ", ".join(f"{u:.2f}" for u, _ in cluster_times)
        + " s; shut-down: " + ", ".join(f"{d:.2f}" for _, d in cluster_times)
        + " s (min of each used above)"
    )

    print()
    print("ratios:")
    ratio = w1 / stage_sum
    print(f"  build workers=1 / sum of stages:       {ratio:6.2f}x  (target <= 1.25x: "
          f"{'met' if ratio <= 1.25 else 'not met'})")
    for fmt, seconds in w2.items():
        speed = n / seconds
        ratio = speed / loop_rate
        print(f"  build workers=2 {fmt:4s} / 2020 loop:      {ratio:6.2f}x  (target >= 15x: "
              f"{'met' if ratio >= 15 else 'not met'})")
        one = w1_by_format[fmt]
        ratio = one / seconds
        print(f"  build workers=2 {fmt:4s} / workers=1 {fmt:4s}: {ratio:6.2f}x  (target >= 1.8x: "
              f"{'met' if ratio >= 1.8 else 'not met'})")
        net = seconds - startup - shutdown
        print(f"    minus start-up + shut-down: {n / net / loop_rate:6.2f}x vs 2020 loop, "
              f"{one / net:5.2f}x vs workers=1")

    best = n / ceiling[2]
    print(f"  ceiling, 2 plain processes / 2020 loop: {best / loop_rate:6.2f}x; "
          f"/ 1 process: {ceiling[1] / ceiling[2]:5.2f}x (a 2-worker build does this and more)")
    for fmt, seconds in w2.items():
        print(f"  build workers=2 {fmt:4s} / ceiling:        {n / seconds / best:6.2f}x")

    if memory:
        print()
        print(
            f"{'peak memory (fresh process, hdf5)':36s} {'seconds':>8s} {'samples/s':>10s} "
            f"{'maxrss MiB':>11s} {'own polled':>11s} {'largest polled':>15s} "
            f"{'tree polled':>12s} {'tree PSS':>9s} {'user s':>7s} {'sys s':>6s} "
            f"{'tree CPU s':>11s}"
        )
        for item in memory:
            label = f"build {item['n']} samples, workers={item['workers']}"
            if "skipped" in item:
                print(f"{label:36s} skipped: {item['skipped']}")
                continue

            def fmt_mib(value):
                return f"{value:11.0f}" if value is not None else f"{'n/a':>11s}"

            print(
                f"{label:36s} {item['wall']:8.2f} {item['n'] / item['wall']:10.1f} "
                f"{fmt_mib(item['maxrss'])} {fmt_mib(item['own_polled'])} "
                f"{fmt_mib(item['largest_polled']):>15s} "
                f"{fmt_mib(item['tree_polled']):>12s} {fmt_mib(item['tree_pss']):>9s} "
                f"{item['user']:7.1f} {item['sys']:6.1f} "
                + (f"{item['tree_cpu']:11.1f}" if item["tree_cpu"] is not None else "n/a")
            )
        for workers in mem_workers:
            rows = [m for m in memory if m["workers"] == workers and "skipped" not in m]
            for key in ("maxrss",) if workers == 1 else ("tree_polled", "tree_pss"):
                if len(rows) >= 2 and rows[0][key] and rows[-1][key]:
                    small, large = rows[0], rows[-1]
                    print(
                        f"  workers={workers}: peak {key} at {large['n']} / at {small['n']} "
                        f"samples: {large[key] / small[key]:.2f}x"
                    )
        print(
            "  (maxrss: peak RSS from os.wait4, the largest of the child and the descendants "
            "it waited for;\n  "
            " polled: psutil every 0.1 s, own = the child process, largest = the largest\n"
            "   single process of the tree, tree = child + dask workers summed,"
            " shared pages counted in each process;\n"
            "   tree PSS: the same sum of proportional set sizes, a page shared by k "
            "processes counting 1/k in each;\n"
            "   user/sys: CPU seconds of the child (and descendants it waited for), from "
            "os.wait4; tree CPU: the tree's, as last polled)"
        )
        largest = max(mem_sizes)
        by_workers = {
            m["workers"]: m for m in memory if m["n"] == largest and "skipped" not in m
        }
        if 1 in by_workers:
            one = by_workers[1]["wall"]
            for workers, item in sorted(by_workers.items()):
                if workers == 1:
                    continue
                rate = item["n"] / item["wall"]
                print(
                    f"  fresh-process builds of {largest} samples (all start-up included): "
                    f"workers={workers} / workers=1 {one / item['wall']:.2f}x, "
                    f"workers={workers} / 2020 loop {rate / loop_rate:.2f}x"
                )

if __name__ == "__main__":
    main()
