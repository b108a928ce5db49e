"""Train, predict and score the learned baselines of configs/, and time model training.

Usage::

    python benchmarks/train_baselines.py reproduce [--folder .] [--models cnn_reconstruct,...]
        [--libraries shapes-32-seed,particles-32] [--leaderboard leaderboard] [--who NAME]
        [--cross cross.md]
    python benchmarks/train_baselines.py speed [--size 32] [--angles 32] [--batch 32]
        [--samples 2048] [--models ...]

``reproduce`` runs, in ``--folder`` (the paths in the configs are relative to it; the
repository root by default), these commands for each LIBRARY and MODEL, as a user types them::

    tomobench build LIBRARY --splits train,val,test --out LIBRARY.h5    (once per library)
    tomobench train configs/MODEL-LIBRARY.yaml
    tomobench predict runs/MODEL-LIBRARY LIBRARY.h5 --out MODEL-LIBRARY.npy --split test
    tomobench score MODEL-LIBRARY.npy LIBRARY.h5 --split test [--leaderboard DIR ...]

With ``--leaderboard``, the score of each model on shapes-32-seed becomes an entry whose
``reproduce`` list is those commands. With ``--cross``, every run is then scored on every
library (``tomobench cross``, FBP ram-lak and hann beside) and the Markdown tables written.
A finished run is not trained again (``train`` finds it complete); an interrupted one resumes.

``speed`` times ``Model.fit`` of each model on ``--samples`` random pairs of ``--angles`` ×
``--size`` sinograms and ``--size``² images held in memory and batched by ``tf.data``, for
two epochs, and prints the samples per second of the second (the first builds and traces
the model): the speed of the model on this machine, without reading a library.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "cnn_reconstruct": "cnn_reconstruct (report §6.2)",
    "dense_reconstruct": "dense_reconstruct",
    "automap": "AUTOMAP (Zhu et al. 2018)",
}
LIBRARIES = ("shapes-32-seed", "particles-32")
LEADERBOARD_LIBRARY = "shapes-32-seed"


def commands(model: str, library: str) -> list[str]:
    """The commands that make and score a model's submission on a library's test split."""
    submission = f"{model}-{library}.npy"
    return [
        f"tomobench build {library} --splits train,val,test --out {library}.h5",
        f"tomobench train configs/{model}-{library}.yaml",
        f"tomobench predict runs/{model}-{library} {library}.h5 --out {submission} --split test",
        f"tomobench score {submission} {library}.h5 --split test",
    ]


def _run(command: list[str]) -> None:
    """Run a command line; ``tomobench`` is the one installed beside this Python."""
    print("+", shlex.join(command), flush=True)
    installed = Path(sys.executable).with_name("tomobench")
    if command[0] == "tomobench" and installed.exists():
        command = [str(installed), *command[1:]]
    subprocess.run(command, check=True)


def reproduce(args) -> None:
    folder = args.folder.resolve()
    if not (folder / "configs").exists():
        (folder / "configs").symlink_to(ROOT / "configs")
    leaderboard = args.leaderboard.resolve() if args.leaderboard else None
    runs = []
    for library in args.libraries:
        for model in args.models:
            build, *made, scoring = commands(model, library)
            started = time.perf_counter()
            if not (folder / f"{library}.h5").exists():
                _run(shlex.split(build))
            for command in made:
                _run(shlex.split(command))
            print(f"{model} on {library}: {time.perf_counter() - started:.0f} s", flush=True)
            command = shlex.split(scoring)
            if leaderboard is not None and library == LEADERBOARD_LIBRARY:
                command += ["--leaderboard", str(leaderboard), "--method", MODELS[model]]
                command += ["--who", args.who]
                for step in (build, *made):
                    command += ["--reproduce", step]
            _run(command)
            runs.append(f"runs/{model}-{library}")
    if args.cross is not None:
        libraries = [f"{library}.h5" for library in args.libraries]
        fbp = ["--fbp", "ram-lak", "--fbp", "hann"]
        _run(["tomobench", "cross", *runs, *libraries, *fbp, "--markdown", str(args.cross)])


def speed(args) -> None:
    import numpy as np

    from tomobench.models import build_model  # before keras: it quiets TensorFlow's start-up
    from tomobench.models.losses import rmse
    from tomobench.models.train import OPTIMISERS

    # isort: split
    import keras
    import tensorflow as tf

    class EpochClock(keras.callbacks.Callback):
        """Records the seconds of each epoch."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.began)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, args.angles, args.size), dtype=np.float32)
    y = rng.random((args.samples, args.size, args.size), dtype=np.float32)
    # batches from memory through tf.data, as training takes them from a library
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch).prefetch(2)
    for model_name in args.models:
        model = build_model(model_name, (args.angles, args.size, args.size))
        model.compile(optimizer=OPTIMISERS["adam"](learning_rate=0.00025), loss=rmse)
        clock = EpochClock()
        model.fit(batches, epochs=2, verbose=0, callbacks=[clock])  # the first builds, traces
        seconds = clock.seconds[-1]
        print(
            f"{model_name:18s} {args.size}² from {args.angles} angles, batch {args.batch}: "
            f"{args.samples / seconds:7.1f} samples/s ({model.count_params():,} parameters)",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands_ = parser.add_subparsers(dest="command", required=True)
    every = ",".join(MODELS)
    run = commands_.add_parser("reproduce", help="train, predict, score the configs")
    run.add_argument("--folder", type=Path, default=ROOT)
    run.add_argument("--models", default=every)
    run.add_argument("--libraries", default=",".join(LIBRARIES))
    run.add_argument("--leaderboard", type=Path, default=None)
    run.add_argument("--who", default="tomobench maintainers")
    run.add_argument("--cross", type=Path, default=None, help="Markdown file for the table")
    timing = commands_.add_parser("speed", help="samples/s of Model.fit per model")
    timing.add_argument("--size", type=int, default=32)
    timing.add_argument("--angles", type=int, default=32)
    timing.add_argument("--batch", type=int, default=32)
    timing.add_argument("--samples", type=int, default=2048)
    timing.add_argument("--models", default=every)
    args = parser.parse_args(argv)
    args.models = [name for name in args.models.split(",") if name]
    unknown = [name for name in args.models if name not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {every}")
    if args.command == "reproduce":
        args.libraries = [name for name in args.libraries.split(",") if name]
    reproduce(args) if args.command == "reproduce" else speed(args)


if __name__ == "__main__":
    sys.exit(main())
