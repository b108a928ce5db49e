"""Time the training of the super-resolution models, and reproduce their leaderboard entries.

Usage::

    python benchmarks/train_superres.py speed [--scale 2] [--patch 24] [--batch 16]
        [--samples 512] [--models edsr,wdsr_b,srgan,guided_sr] [--published]
    python benchmarks/train_superres.py reproduce [--folder .] [--configs edsr-shapes-128-x2,...]
        [--leaderboard leaderboard] [--who NAME] [--overwrite]

``speed`` times ``Model.fit`` of each model on ``--samples`` random low-resolution patches of
``--patch``² and their ×``--scale`` targets (and guides, for ``guided_sr``), held in memory
and batched by ``tf.data``, for two epochs, and prints the samples per second of the second
(the first builds and traces the model), and each model's speed as a ratio of EDSR's in the
same run. Models have their factories' defaults (the papers' sizes), or, with
``--published``, the options of their configs in configs/ (the sizes the leaderboard entries
were trained at).

``reproduce`` runs, in ``--folder`` (the paths in the configs are relative to it), for each
config ``configs/MODEL-LIBRARY-xS.yaml`` the commands its header lists, as a user types them::

    tomobench build LIBRARY --splits ... --out LIBRARY.h5    (once per library)
    tomobench train configs/MODEL-LIBRARY-xS.yaml
    tomobench predict runs/MODEL-LIBRARY-xS LIBRARY.h5 --out MODEL-LIBRARY-xS.npy --split test
    tomobench score MODEL-LIBRARY-xS.npy LIBRARY.h5 --split test --scale S [--leaderboard DIR]

With ``--leaderboard``, each score becomes an entry named after the model and its size
(``EDSR 8×32``) with the run's training budget (``--run``) and those commands.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("edsr", "wdsr_b", "srgan", "guided_sr")
NAMES = {
    "edsr": "EDSR (Lim et al. 2017)",
    "wdsr_b": "WDSR-B (Yu et al. 2018)",
    "srgan": "SRGAN (Ledig et al. 2017)",
    "guided_sr": "guided_sr",
}


def published_options(model: str, scale: int) -> dict:
    """The options of the first published config of ``model`` at ``scale``."""
    for path in sorted((ROOT / "configs").glob(f"{model}-*-x{scale}.yaml")):
        return yaml.safe_load(path.read_text())["options"]
    return {}


def speed(args) -> None:
    from tomobench.models import build_model  # before keras: it quiets TensorFlow's start-up
    from tomobench.models.losses import LOSSES

    # isort: split
    import keras

    rng = np.random.default_rng(0)
    n, p, s = args.samples, args.patch, args.scale
    low = rng.random((n, p, p, 1), dtype=np.float32)
    high = rng.random((n, p * s, p * s, 1), dtype=np.float32)
    guide = rng.random((n, p * s, p * s, 1), dtype=np.float32)
    rates = {}
    print(f"{n} patches of {p}² → {p * s}², batches of {args.batch}, 2nd epoch timed")
    for model_name in args.models:
        options = published_options(model_name, s) if args.published else {}
        if model_name == "guided_sr":
            options = {**options, "guide": True}
        keras.utils.set_random_seed(0)
        model = build_model(model_name, scale=s, **options)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=LOSSES["rmse"])
        x = (low, guide) if model_name == "guided_sr" else low
        model.fit(x, high, batch_size=args.batch, epochs=1, verbose=0)
        began = time.perf_counter()
        model.fit(x, high, batch_size=args.batch, epochs=1, verbose=0)
        rates[model_name] = n / (time.perf_counter() - began)
    reference = rates.get("edsr")
    print(f"{'model':<28}{'parameters':>12}{'samples/s':>12}{'vs EDSR':>10}")
    for model_name, rate in rates.items():
        options = published_options(model_name, s) if args.published else {}
        if model_name == "guided_sr":
            options = {**options, "guide": True}
        built = build_model(model_name, scale=s, **options)
        count = getattr(built, "generator", built).count_params()  # what predicts
        ratio = f"{rate / reference:.2f}×" if reference else "—"
        print(f"{NAMES[model_name]:<28}{count:>12,}{rate:>12.1f}{ratio:>10}")


def method_name(config: Path) -> str:
    """The leaderboard name of a config's method: its model's, a guided model's with or
    without its guide, and the config's options in brackets."""
    data = yaml.safe_load(config.read_text())
    options = data["options"]
    name = {"edsr": "EDSR", "wdsr_b": "WDSR-B", "srgan": "SRGAN"}.get(data["model"])
    if data["model"] == "guided_sr":
        name = "guided_sr (absorption guide)" if options["guide"] else "guided_sr (no guide)"
    return f"{name} {options['res_blocks']}×{options['filters']}"


def _run(command: list[str]) -> None:
    print("+", shlex.join(command), flush=True)
    installed = Path(sys.executable).with_name("tomobench")
    if command[0] == "tomobench" and installed.exists():
        command = [str(installed), *command[1:]]
    subprocess.run(command, check=True)


def header_commands(config: Path) -> list[str]:
    """The ``tomobench …`` lines of a config's header comment."""
    lines = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith("tomobench "):
            lines.append(text)
    return lines


def reproduce(args) -> None:
    folder = args.folder.resolve()
    if not (folder / "configs").exists():
        (folder / "configs").symlink_to(ROOT / "configs")
    for name in args.configs:
        commands = header_commands(ROOT / "configs" / f"{name}.yaml")
        *steps, scoring = commands
        for command in steps:
            words = shlex.split(command)
            if words[1] == "build" and (folder / words[-1]).exists():
                continue  # built for an earlier config
            _run(words)
        words = shlex.split(scoring)
        if args.leaderboard:
            method = method_name(ROOT / "configs" / f"{name}.yaml")
            words += ["--leaderboard", str(args.leaderboard.resolve()), "--method", method]
            words += ["--run", f"runs/{name}", "--who", args.who]
            words += sum((["--reproduce", command] for command in steps), [])
            words += ["--overwrite"] * args.overwrite
        _run(words)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed")
    timing.add_argument("--scale", type=int, default=2)
    timing.add_argument("--patch", type=int, default=24)
    timing.add_argument("--batch", type=int, default=16)
    timing.add_argument("--samples", type=int, default=512)
    timing.add_argument("--models", type=lambda t: t.split(","), default=list(MODELS))
    timing.add_argument("--published", action="store_true")
    again = commands.add_parser("reproduce")
    again.add_argument("--folder", type=Path, default=ROOT)
    again.add_argument(
        "--configs",
        type=lambda t: t.split(","),
        default=sorted(p.stem for p in (ROOT / "configs").glob("*-x[0-9].yaml")),
    )
    again.add_argument("--leaderboard", type=Path)
    again.add_argument("--who", default="tomobench maintainers")
    again.add_argument(
        "--overwrite", action="store_true", help="replace the configs' leaderboard entries"
    )
    args = parser.parse_args(argv)
    speed(args) if args.command == "speed" else reproduce(args)


if __name__ == "__main__":
    main()
