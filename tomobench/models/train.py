"""Training: a config → a run folder that holds everything needed to predict and to resume.

A run folder ``RUN`` holds:

- ``config.yaml``: the validated config, every default filled in;
- ``normalisation.json``: the input normalisation (:class:`~.data.Normalisation`);
- ``history.csv``: one row per completed epoch (``epoch``, ``loss``, ``val_loss``,
  ``train_seconds``, ``samples_per_second``), and ``loss.png``, its plot;
- ``checkpoints/epoch-NNNN.keras``: the model *and optimiser state* after the last completed
  epoch, and ``checkpoints/best.weights.npz``: the weights of the epoch with the lowest
  monitored loss (validation loss; training loss without a validation split);
- ``state.json``: completed epochs, the best epoch and loss, epochs without improvement,
  whether early stopping ended the run. It is written last after each epoch, so it always
  names a complete checkpoint;
- ``model.keras``: the trained model (best weights, no optimiser), written when the run
  ends, and ``run.json``: what was trained on what, with versions and timings.

Running :func:`train` again with the same config resumes an interrupted run from its last
completed epoch (same weights, optimiser state, history and early-stopping count; epoch *e*
sees the same batches as it would have without the interruption). Only ``epochs`` and
``early_stopping`` may change between the two: raising ``epochs`` continues a finished run.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from tomobench._atomic import atomic_path, write_text_atomically
from tomobench.models.config import TrainConfig, dump_config, load_config, parse_config
from tomobench.models.data import (
    Normalisation,
    Pairs,
    SplitStream,
    compute_normalisation,
    evaluation_dataset,
    training_dataset,
)
from tomobench.models.errors import ConfigError, RunError
from tomobench.models.losses import LOSSES
from tomobench.models.registry import build_model, is_super_resolution, library_shapes
from tomobench.store import open_library

__all__ = ["OPTIMISERS", "RESUMABLE_FIELDS", "plot_history", "read_history", "train"]

OPTIMISERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
    "sgd": keras.optimizers.SGD,
}
RESUMABLE_FIELDS = ("epochs", "early_stopping")
"""Config fields that may differ when a run folder is trained again (resumed)."""

CONFIG, STATE, HISTORY, PLOT = "config.yaml", "state.json", "history.csv", "loss.png"
NORMALISATION, MODEL, INFO = "normalisation.json", "model.keras", "run.json"
CHECKPOINTS, BEST = "checkpoints", "best.weights.npz"


def train(
    config: TrainConfig | str | Path | dict,
    *,
    verbose: int | str = "auto",
    callbacks: list | tuple = (),
) -> Path:
    """Train the model a config describes (a :class:`TrainConfig`, a YAML path or a
    mapping) and return its run folder (see the module docstring for its contents).

    A run folder that already holds this config's run is resumed from its last completed
    epoch, or left as it is if that run is finished. ``verbose`` is Keras' (``"auto"``: a
    progress bar on a terminal, one line per epoch otherwise); ``callbacks`` are extra Keras
    callbacks. Raises :class:`~.errors.ConfigError` for a bad config or a library that does
    not fit it, :class:`~.errors.RunError` for a run folder that holds another run.
    """
    config = _as_config(config)
    run = Path(config.run)
    pairs = Pairs.of(config)
    with open_library(config.library) as library:
        _check_library(library, config, pairs)  # before the run folder is made or changed
        state = _open_run(run, config)
        shapes = None if pairs.super_resolution else library_shapes(library)
        library_info = {
            "name": library.recipe.name,
            "path": str(config.library),
            "recipe_sha256": library.recipe_sha256,
        }
        normalisation = _normalisation(run, library, config, pairs)
    train_stream = SplitStream(
        config.library,
        config.train_split,
        batch_size=config.batch_size,
        normalisation=normalisation,
        pairs=pairs,
        shuffle=True,
        seed=config.seed,
        shuffle_buffer=config.shuffle_buffer,
        limit=config.samples_per_epoch,
    )
    validation_stream = None
    if config.validation_split is not None:
        validation_stream = SplitStream(
            config.library,
            config.validation_split,
            batch_size=config.batch_size,
            normalisation=normalisation,
            pairs=pairs,
            limit=config.validation_samples,
        )
    fitting = not state["stopped"] and state["completed"] < config.epochs
    if fitting:
        _fit(run, config, state, shapes, train_stream, validation_stream, verbose, callbacks)
    if fitting or not (run / MODEL).exists():
        _finish(run, config, shapes, library_info, train_stream, validation_stream)
    return run


# -- the run folder -------------------------------------------------------------------------


def _as_config(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return TrainConfig.model_validate(config.model_dump())
    if isinstance(config, dict):
        return parse_config(config)
    return load_config(config)


def _new_state() -> dict:
    return {
        "completed": 0,
        "best": None,
        "best_epoch": None,
        "wait": 0,
        "stopped": False,
        "checkpoint": None,
    }


def _open_run(run: Path, config: TrainConfig) -> dict:
    """The state of the run at ``run`` (a fresh one for a new folder), after checking that
    it is this config's run; (re)writes ``config.yaml``."""
    saved_config = run / CONFIG
    if saved_config.exists():
        saved = load_config(saved_config)
        old = saved.model_dump(mode="json")
        new = config.model_dump(mode="json")
        differ = [name for name in new if name not in RESUMABLE_FIELDS and old[name] != new[name]]
        if differ and (run / STATE).exists():
            verb = "differs" if len(differ) == 1 else "differ"
            msg = (
                f"{run} holds a run of another config ({', '.join(differ)} {verb}); give "
                "another run folder, or delete this one to start again"
            )
            raise RunError(msg)
        if differ:  # a run that completed no epoch: nothing of it is kept
            _forget_unstarted(run)
        state = _read_state(run)
    elif run.exists() and (not run.is_dir() or any(run.iterdir())):
        msg = f"{run} exists and is not a tomobench run folder (no {CONFIG}); give another run"
        raise RunError(msg)
    else:
        state = _new_state()
    try:
        (run / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        msg = f"cannot write the run folder {run}: {error.strerror or error}"
        raise RunError(msg) from None
    write_text_atomically(saved_config, dump_config(config), error=RunError)
    return state


def _forget_unstarted(run: Path) -> None:
    """Remove what a run that completed no epoch left (its normalisation, a checkpoint of
    an epoch cut short), so that a new config starts it afresh."""
    try:
        (run / NORMALISATION).unlink(missing_ok=True)
        (run / HISTORY).unlink(missing_ok=True)
        if (run / CHECKPOINTS).is_dir():
            shutil.rmtree(run / CHECKPOINTS)
    except OSError as error:
        msg = f"cannot write the run folder {run}: {error.strerror or error}"
        raise RunError(msg) from None


def _read_state(run: Path) -> dict:
    path = run / STATE
    if not path.exists():
        return _new_state()
    try:
        state = {**_new_state(), **json.loads(path.read_text())}
    except (OSError, ValueError) as error:
        msg = f"{path}: unreadable run state ({error}); delete the run folder to start again"
        raise RunError(msg) from None
    if state["completed"] and not (run / CHECKPOINTS / str(state["checkpoint"])).exists():
        msg = f"{path}: its checkpoint {state['checkpoint']} is missing; delete the run folder"
        raise RunError(msg)
    return state


def _check_library(library, config: TrainConfig, pairs: Pairs) -> None:
    library.require_complete("training on it", error=ConfigError)
    for field in ("train_split", "validation_split"):
        split = getattr(config, field)
        if split is None:
            continue
        if split not in library.splits:
            msg = (
                f"{field}: library {library.path} has no split {split!r} "
                f"(it has {', '.join(library.splits) or 'none'})"
            )
            raise ConfigError(msg)
        arrays = library.arrays(split)
        for name in pairs.arrays:
            if name not in arrays:
                msg = f"{config.model}: library {library.path} holds no {name} to learn from"
                if name.startswith("images_x"):
                    factors = sorted(key for key in arrays if key.startswith("images_x"))
                    msg += f" (it has {', '.join(factors) or 'no low-resolution twins'})"
                raise ConfigError(msg)
        if arrays[pairs.inputs[0]].shape[0] == 0:
            msg = f"{field}: split {split!r} of {library.path} holds no samples"
            raise ConfigError(msg)
    if pairs.super_resolution and pairs.patch is not None:
        low = arrays[pairs.inputs[0]].shape[1:3]
        if pairs.patch > min(low):
            msg = (
                f"patch: {pairs.patch} is larger than the low-resolution images of "
                f"{library.path} ({low[0]} × {low[1]})"
            )
            raise ConfigError(msg)


def _normalisation(run: Path, library, config: TrainConfig, pairs: Pairs) -> Normalisation:
    path = run / NORMALISATION
    if path.exists():
        return Normalisation.load(path)
    normalisation = compute_normalisation(
        library,
        config.train_split,
        chunks=config.normalisation_chunks,
        seed=config.seed,
        pairs=pairs,
    )
    normalisation.save(path)
    return normalisation


# -- fitting --------------------------------------------------------------------------------


def _model(config: TrainConfig, shapes) -> keras.Model:
    return build_model(config.model, shapes, scale=config.scale, **config.options)


def _compiled_model(config: TrainConfig, shapes) -> keras.Model:
    model = _model(config, shapes)
    model.compile(
        optimizer=OPTIMISERS[config.optimiser](learning_rate=config.learning_rate),
        loss=LOSSES[config.loss],
    )
    return model


def _fit(run, config, state, shapes, train_stream, validation_stream, verbose, callbacks):
    first = state["completed"]
    seed = np.random.SeedSequence([config.seed, first]).generate_state(1)[0]
    keras.utils.set_random_seed(int(seed))
    if first:
        checkpoint = run / CHECKPOINTS / state["checkpoint"]
        try:
            model = keras.models.load_model(checkpoint)
        except (OSError, ValueError, KeyError) as error:  # a missing or damaged file
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            msg = (
                f"{checkpoint}: the checkpoint to resume from does not load ({reason}); "
                f"remove the run folder {run} to train from the start"
            )
            raise RunError(msg) from None
    else:
        model = _compiled_model(config, shapes)
    recorder = _Recorder(run, config, state, samples=train_stream.limit)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(
        training_dataset(train_stream, first_epoch=first, epochs=config.epochs),
        steps_per_epoch=train_stream.batches_per_epoch,
        epochs=config.epochs,
        initial_epoch=first,
        validation_data=(
            None if validation_stream is None else evaluation_dataset(validation_stream)
        ),
        callbacks=[recorder, *callbacks],
        shuffle=False,  # the stream shuffles, seeded
        verbose=verbose,
    )
    if recorder.diverged is not None:
        msg = (
            f"training diverged: the loss of epoch {recorder.diverged} is not finite; "
            f"lower learning_rate ({config.learning_rate}) and delete {run} to start again"
        )
        raise RunError(msg)


class _Recorder(keras.callbacks.Callback):
    """After each epoch: history row, plot, best weights, checkpoint, then the state (the
    commit point); early stopping whose count survives a restart."""

    def __init__(self, run: Path, config: TrainConfig, state: dict, *, samples: int) -> None:
        super().__init__()
        self.run = run
        self.state = state
        self.patience = config.early_stopping
        self.monitor = "val_loss" if config.validation_split is not None else "loss"
        self.loss = f"{config.loss} loss"
        self.samples = samples
        self.rows = read_history(run)[: state["completed"]]
        self.diverged = None
        self._began = self._trained = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._began = time.perf_counter()
        self._trained = 0.0

    def on_test_begin(self, logs=None):
        self._trained = time.perf_counter() - self._began

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = self._trained or time.perf_counter() - self._began
        value = float(logs.get(self.monitor, math.nan))
        if not math.isfinite(float(logs.get("loss", math.nan))) or not math.isfinite(value):
            self.diverged = epoch + 1
            self.model.stop_training = True
            return
        row = {"epoch": epoch + 1}
        row.update({key: float(logs[key]) for key in ("loss", "val_loss") if key in logs})
        row["train_seconds"] = round(seconds, 3)
        row["samples_per_second"] = round(self.samples / seconds, 1) if seconds > 0 else None
        self.rows.append(row)
        _write_history(self.run, self.rows)
        plot_history(self.rows, self.run / PLOT, loss=self.loss)
        state = self.state
        if state["best"] is None or value < state["best"]:
            state.update(best=value, best_epoch=epoch + 1, wait=0)
            _save_weights(self.model, self.run / CHECKPOINTS / BEST)
        else:
            state["wait"] += 1
        if self.patience is not None and state["wait"] >= self.patience:
            state["stopped"] = True
            self.model.stop_training = True
        name = f"epoch-{epoch + 1:04d}.keras"
        self.model.save(self.run / CHECKPOINTS / name)
        old = state["checkpoint"]
        state.update(completed=epoch + 1, checkpoint=name)
        write_text_atomically(self.run / STATE, json.dumps(state, indent=2) + "\n", error=RunError)
        if old and old != name:
            (self.run / CHECKPOINTS / old).unlink(missing_ok=True)


def _save_weights(model: keras.Model, path: Path) -> None:
    """The model's weights (not the optimiser's) as ``w0``, ``w1``, … in an .npz file."""
    arrays = {f"w{index}": array for index, array in enumerate(model.get_weights())}
    with atomic_path(path, error=RunError) as temporary:
        np.savez(temporary, **arrays)


# -- history --------------------------------------------------------------------------------

HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "train_seconds", "samples_per_second")


def read_history(run: str | Path) -> list[dict]:
    """The rows of ``RUN/history.csv`` as dicts of floats (``epoch`` an int); ``[]`` if
    there is none."""
    path = Path(run) / HISTORY
    if not path.exists():
        return []
    with open(path, newline="") as file:
        rows = []
        for row in csv.DictReader(file):
            rows.append(
                {
                    key: (int(value) if key == "epoch" else float(value))
                    for key, value in row.items()
                    if value not in ("", None)
                }
            )
        return rows


def _write_history(run: Path, rows: list[dict]) -> None:
    columns = [name for name in HISTORY_COLUMNS if any(name in row for row in rows)]
    with atomic_path(run / HISTORY, error=RunError) as temporary:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def plot_history(rows: list[dict], path: str | Path, *, loss: str = "loss") -> Path:
    """Draw the training (and validation) loss per epoch into a PNG file; ``loss`` labels
    the vertical axis."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(5.5, 3.5), layout="constrained")
    axes = figure.add_subplot()
    epochs = [row["epoch"] for row in rows]
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        values = [row.get(key) for row in rows]
        if any(value is not None for value in values):
            axes.plot(epochs, values, marker="o", markersize=3, label=label)
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(loss)
    axes.set_yscale("log")
    axes.legend()
    axes.grid(alpha=0.3)
    path = Path(path)
    with atomic_path(path, error=RunError) as temporary:
        figure.savefig(temporary, dpi=100)
    return path


# -- the end of a run -----------------------------------------------------------------------


def hardware() -> str:
    """What trained: the CPU model and the CPUs this process may use, and any GPU
    TensorFlow sees, in one line (``AMD EPYC, 2 CPUs, no GPU``)."""
    import os
    import platform

    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            names = [
                line.split(":", 1)[1].strip() for line in file if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append(details.get("device_name", device.name))
    return f"{cpu}, {cpus} CPUs, {', '.join(gpus) if gpus else 'no GPU'}"


def _finish(run, config, shapes, library_info, train_stream, validation_stream) -> None:
    """Write ``model.keras`` (best weights, no optimiser) and ``run.json``."""
    import tensorflow as tf

    from tomobench import __version__

    state = _read_state(run)
    model = _model(config, shapes)
    with np.load(run / CHECKPOINTS / BEST) as saved:
        model.set_weights([saved[f"w{index}"] for index in range(len(saved.files))])
    with atomic_path(run / MODEL, error=RunError) as temporary:
        model.save(temporary)
    rows = read_history(run)
    info = {
        "tomobench_version": __version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "model": config.model,
        # what predicts: an adversarial model's generator, without its discriminator
        "parameters": int(getattr(model, "generator", model).count_params()),
        **(
            {"scale": config.scale, "channels": config.channels, "patch": config.patch}
            if is_super_resolution(config.model)
            else {"angles": shapes[0], "detector": shapes[1], "size": shapes[2]}
        ),
        "library": library_info,
        "train_samples": train_stream.count,
        "samples_per_epoch": train_stream.limit,
        "validation_samples": None if validation_stream is None else validation_stream.limit,
        "epochs_completed": state["completed"],
        "stopped_early": state["stopped"],
        "best_epoch": state["best_epoch"],
        "best_monitored_loss": state["best"],
        "train_seconds": round(sum(row.get("train_seconds", 0.0) for row in rows), 1),
        "hardware": hardware(),
    }
    write_text_atomically(run / INFO, json.dumps(info, indent=2) + "\n", error=RunError)
