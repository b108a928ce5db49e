"""Build rate and peak memory of hyperspectral (XRD-CT) libraries.

Usage::

    python benchmarks/bench_xrdct.py [--recipes xrdct,xrdct-150] [--sizes 20,80]
        [--workers 1,2] [--tmpdir DIR]

For each recipe, number of samples N and worker count W, the recipe's splits are replaced by
one ``test`` split of N samples and ``tomobench build`` runs in a fresh process (start-up
included) into a temporary folder, removed at the end. Printed per build: seconds, cubes
per second, channel sinograms per second (cubes × channels), the peak RSS from
``os.wait4`` (the build process and the descendants it waited for; the dask workers,
children of the fork server, are not among them and count in the tree's figures only)
and the peak of
the summed RSS of the process tree, polled with psutil every 0.1 s, and of its summed PSS
(proportional set size: a page that k processes share counts 1/k in each; workers forked
from one fork server share its pages, which the summed RSS counts once per process). Two
sizes N show
whether memory grows with the number of samples (it must not: a build streams by chunks).
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tomobench.recipe import load_recipe


def tree_memory(process: psutil.Process) -> tuple[int, int]:
    """Summed RSS and summed PSS (bytes) of ``process`` and its descendants."""
    rss = pss = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", 0)
    return rss, pss


def timed_build(recipe_path: Path, out: Path, workers: int) -> dict:
    command = [
        sys.executable, "-m", "tomobench.cli", "build", str(recipe_path),
        "--out", str(out), "--workers", str(workers),
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched, peak, done = psutil.Process(child.pid), [0, 0], threading.Event()

    def poll():
        while not done.is_set():
            try:
                peak[:] = map(max, peak, tree_memory(watched))
            except psutil.Error:
                pass
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    poller.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"build failed: {child.stderr.read().decode()}")
    return {
        "seconds": seconds,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "tree_mib": peak[0] / 2**20,
        "tree_pss_mib": peak[1] / 2**20,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="xrdct,xrdct-150")
    parser.add_argument("--sizes", default="20,80")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--tmpdir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.sizes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    print(
        f"{'recipe':12s} {'cube':>16s} {'N':>5s} {'W':>2s} {'seconds':>8s} {'cubes/s':>8s} "
        f"{'chan-sino/s':>12s} {'maxrss MiB':>11s} {'tree MiB':>9s} {'tree PSS':>9s}"
    )
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as folder:
        for name in args.recipes.split(","):
            recipe = load_recipe(name)
            channels, size = recipe.channels, recipe.image_size
            cube = f"{size}²×{channels}"
            for n in sizes:
                data = {**recipe.model_dump(mode="json"), "splits": {"test": n}}
                recipe_path = Path(folder) / f"{name}-{n}.yaml"
                recipe_path.write_text(json.dumps(data))  # JSON is YAML
                for count in workers:
                    out = Path(folder) / f"{name}-{n}-{count}.h5"
                    result = timed_build(recipe_path, out, count)
                    out.unlink()
                    rate = n / result["seconds"]
                    print(
                        f"{name:12s} {cube:>16s} {n:5d} {count:2d} {result['seconds']:8.1f} "
                        f"{rate:8.2f} {rate * channels:12.0f} {result['maxrss_mib']:11.0f} "
                        f"{result['tree_mib']:9.0f} {result['tree_pss_mib']:9.0f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
