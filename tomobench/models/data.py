"""The input pipeline: batches of (sinograms, images) streamed from a library on disk.

A split is read one storage chunk of samples at a time (HDF5 or Zarr alike), never whole:

- :class:`SplitStream` is a plain Python generator of numpy batches. For training it visits
  the chunks in a seeded random order (:func:`chunk_order`, a function of the seed and the
  epoch), gathers ``shuffle_buffer`` samples' worth of chunks, permutes the samples of that
  window (seeded likewise), and cuts them into batches; what is left of a window is carried
  into the next. So epoch *e* of a run has the same batches whether or not the run was
  interrupted before it, and memory holds one window, not the split.
- :func:`training_dataset` and :func:`evaluation_dataset` wrap it as ``tf.data`` datasets
  for :meth:`keras.Model.fit`.
- :class:`Normalisation` standardises sinograms with a mean and a standard deviation
  computed once from a seeded sample of the training split's chunks. It is saved in the run
  folder (``normalisation.json``) and applied, identically, at prediction.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tomobench._atomic import write_text_atomically
from tomobench.models.errors import ConfigError, RunError
from tomobench.store import open_library
from tomobench.store.format import chunk_bounds, chunk_count

__all__ = [
    "Normalisation",
    "Pairs",
    "SplitStream",
    "chunk_length",
    "chunk_order",
    "compute_normalisation",
    "evaluation_dataset",
    "training_dataset",
]


# -- what a model learns from -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Which arrays of a library a model takes and learns to give, and how a stored sample
    becomes the model's inputs.

    Reconstruction: ``inputs`` ``("sinograms",)``, ``target`` ``"images"``, one sample per
    stored sample. Super-resolution (``scale`` set): ``inputs`` ``("images_x{S}",)`` (and
    ``"absorption"`` for a guided model), ``target`` ``"images"``; every image gains a channel
    axis, ``(…, h, w, 1)``. A hyperspectral sample ``(h, w, C)`` gives ``C`` samples, one per
    channel (``channels`` ``"each"``), or one, the sum of its channels divided by ``C``
    (``"sum"``); the guide is the same for every channel. ``patch``: training samples are
    random ``patch`` × ``patch`` squares of the low-resolution image and the squares of the
    high-resolution image (and guide) they cover.
    """

    inputs: tuple[str, ...] = ("sinograms",)
    target: str = "images"
    scale: int | None = None
    channels: str = "each"
    patch: int | None = None

    @classmethod
    def of(cls, config) -> Pairs:
        """The pairs a training config (:class:`~.config.TrainConfig`) describes."""
        from tomobench.models.registry import model_inputs

        return cls(
            inputs=model_inputs(config.model, config.options, config.scale),
            scale=config.scale,
            channels=config.channels,
            patch=config.patch,
        )

    @property
    def super_resolution(self) -> bool:
        return self.scale is not None

    @property
    def arrays(self) -> tuple[str, ...]:
        """Every array read for a sample: the inputs, then the target."""
        return (*self.inputs, self.target)

    def per_sample(self, target_shape: tuple[int, ...]) -> int:
        """Model samples one stored sample gives (``target_shape``: one sample's target)."""
        if self.super_resolution and len(target_shape) == 3 and self.channels == "each":
            return int(target_shape[-1])
        return 1

    def arrange(
        self, arrays: dict[str, np.ndarray], normalisation: Normalisation | None, rng=None
    ) -> list[np.ndarray]:
        """The model's inputs and target (float32, in that order) from one read of the
        stored arrays; ``rng`` draws the patches (``None``: whole images)."""
        if not self.super_resolution:
            x = np.asarray(arrays[self.inputs[0]], dtype=np.float32)
            if normalisation is not None:
                x = normalisation.apply(x)
            return [x, np.asarray(arrays[self.target], dtype=np.float32)]
        low = self.as_images(arrays[self.inputs[0]])
        high = self.as_images(arrays[self.target])
        columns = [low]
        if len(self.inputs) > 1:
            guide = np.asarray(arrays[self.inputs[1]], dtype=np.float32)
            columns.append(np.repeat(guide, len(low) // max(len(guide), 1), axis=0))
        columns.append(high)
        if normalisation is not None:
            columns = normalisation.apply_all(columns, guided=len(self.inputs) > 1)
        if rng is not None and self.patch is not None:
            columns = self._patches(columns, rng)
        return [np.ascontiguousarray(column[..., np.newaxis]) for column in columns]

    def as_images(self, values: np.ndarray) -> np.ndarray:
        """Stored samples ``(k, h, w)`` or cubes ``(k, h, w, C)`` as 2-D images, float32:
        ``(k·C, h, w)`` channel by channel, or ``(k, h, w)`` channel means."""
        values = np.asarray(values, dtype=np.float32)
        if values.ndim == 3:
            return values
        if self.channels == "sum":
            return values.mean(axis=-1, dtype=np.float32)
        return np.moveaxis(values, -1, 1).reshape(-1, *values.shape[1:3])

    def _patches(self, columns: list[np.ndarray], rng) -> list[np.ndarray]:
        size, scale = self.patch, self.scale
        count, height, width = columns[0].shape
        rows = rng.integers(0, height - size + 1, count)
        cols = rng.integers(0, width - size + 1, count)
        cut = []
        for index, column in enumerate(columns):
            factor = 1 if index == 0 else scale
            side = size * factor
            out = np.empty((count, side, side), np.float32)
            for sample in range(count):
                r, c = rows[sample] * factor, cols[sample] * factor
                out[sample] = column[sample, r : r + side, c : c + side]
            cut.append(out)
        return cut


# -- normalisation --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """``(x - mean) / std``, with ``mean`` and ``std`` taken over every value of array
    ``array`` of ``samples`` samples of split ``split`` of the library whose recipe is
    ``recipe_sha256``.

    Super-resolution (``target`` true): the targets are standardised with the same ``mean``
    and ``std`` (input and target are images in the same units) and predictions mapped back
    with :meth:`restore`; a guide image gets its own ``guide_mean`` and ``guide_std``.
    """

    mean: float
    std: float
    split: str = "train"
    samples: int = 0
    recipe_sha256: str = ""
    array: str = "sinograms"
    target: bool = False
    guide_mean: float | None = None
    guide_std: float | None = None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The normalised values, float32 (a new array)."""
        values = np.asarray(values, dtype=np.float32) - np.float32(self.mean)
        values /= np.float32(self.std)
        return values

    def restore(self, values: np.ndarray) -> np.ndarray:
        """Normalised values back in the units of the library, float32 (a new array)."""
        values = np.asarray(values, dtype=np.float32) * np.float32(self.std)
        values += np.float32(self.mean)
        return values

    def apply_guide(self, values: np.ndarray) -> np.ndarray:
        if self.guide_mean is None or self.guide_std is None:
            msg = "this normalisation has no guide statistics (the run is not guided)"
            raise RunError(msg)
        values = np.asarray(values, dtype=np.float32) - np.float32(self.guide_mean)
        values /= np.float32(self.guide_std)
        return values

    def apply_all(self, columns: list[np.ndarray], *, guided: bool) -> list[np.ndarray]:
        """Inputs (and, with ``target``, the target last) of a super-resolution read."""
        out = [self.apply(columns[0])]
        if guided:
            out.append(self.apply_guide(columns[1]))
        last = columns[-1]
        out.append(self.apply(last) if self.target else np.asarray(last, dtype=np.float32))
        return out

    def save(self, path: str | Path) -> Path:
        data = {"method": "standardise", **dataclasses.asdict(self)}
        return write_text_atomically(path, json.dumps(data, indent=2) + "\n", error=RunError)

    @classmethod
    def load(cls, path: str | Path) -> Normalisation:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.pop("method") != "standardise":
                raise ValueError("unknown method")
            return cls(**data)
        except FileNotFoundError:
            msg = f"{path}: missing (the run folder lacks its normalisation)"
            raise RunError(msg) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            msg = f"{path}: not a tomobench normalisation ({error})"
            raise RunError(msg) from None


def chunk_length(array, default: int) -> int:
    """Samples per storage chunk of a library array (h5py or zarr), ``default`` if the array
    is not chunked."""
    chunks = getattr(array, "chunks", None)
    return int(chunks[0]) if chunks else max(1, int(default))


def _moments(array, picked, length) -> tuple[float, float, int]:
    """Mean and standard deviation (float64 sums) of the chunks ``picked`` of ``array``, and
    the samples they hold."""
    count = int(array.shape[0])
    samples = values_seen = 0
    first = second = 0.0
    for index in picked:
        start, stop = chunk_bounds(count, length, int(index))
        values = np.asarray(array[start:stop], dtype=np.float64)
        samples += stop - start
        values_seen += values.size
        first += values.sum()
        second += np.square(values).sum()
    mean = first / values_seen
    variance = max(second / values_seen - mean * mean, 0.0)
    return float(mean), (math.sqrt(variance) if variance > 0 else 1.0), samples


def compute_normalisation(
    library,
    split: str = "train",
    *,
    chunks: int = 8,
    seed: int = 0,
    pairs: Pairs | None = None,
) -> Normalisation:
    """Mean and standard deviation of the model input (``pairs.inputs[0]``; sinograms by
    default) over ``chunks`` storage chunks of ``split``, drawn at random (seeded), read one
    at a time, accumulated in float64; and of the guide, for a guided model.

    Values that are all equal get ``std`` 1 (nothing to scale).
    """
    pairs = pairs or Pairs()
    name = pairs.inputs[0]
    array = library[f"{split}/{name}"]
    count = int(array.shape[0])
    if count == 0:
        msg = f"{library.path}: split {split!r} holds no samples to normalise with"
        raise ConfigError(msg)
    length = chunk_length(array, library.recipe.output.chunk)
    total = chunk_count(count, length)
    picked = np.sort(np.random.default_rng(seed).permutation(total)[: max(1, chunks)])
    mean, std, samples = _moments(array, picked, length)
    guide_mean = guide_std = None
    if len(pairs.inputs) > 1:
        guide_mean, guide_std, _ = _moments(library[f"{split}/{pairs.inputs[1]}"], picked, length)
    return Normalisation(
        mean=mean,
        std=std,
        split=split,
        samples=int(samples),
        recipe_sha256=library.recipe_sha256,
        array=name,
        target=pairs.super_resolution,
        guide_mean=guide_mean,
        guide_std=guide_std,
    )


# -- streaming ------------------------------------------------------------------------------


def chunk_order(chunks: int, *, seed: int, epoch: int) -> np.ndarray:
    """The order in which an epoch visits ``chunks`` storage chunks: a permutation that
    depends only on ``seed`` and ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(chunks)


class SplitStream:
    """Batches of one split of a library, read one storage chunk at a time.

    ``pairs`` (a :class:`Pairs`; sinograms → images by default) says which arrays are read
    and how they become the model's inputs and target. ``shuffle=False`` gives the split in
    sample order (for validation and prediction); ``shuffle=True`` visits chunks in
    :func:`chunk_order`, permutes the samples within windows of at least ``shuffle_buffer``
    samples, and cuts patches if ``pairs`` asks for them. ``limit`` ends each epoch after
    that many samples (the first ones of its order). ``normalisation`` (a
    :class:`Normalisation`, or ``None`` for raw values) is applied to each chunk as it is
    read. ``reads`` counts the chunks read so far, ``largest_read`` the most stored samples
    one read returned.
    """

    def __init__(
        self,
        library_path: str | Path,
        split: str,
        *,
        batch_size: int,
        normalisation: Normalisation | None,
        pairs: Pairs | None = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        limit: int | None = None,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be at least 1, got {batch_size}"
            raise ConfigError(msg)
        self.library_path = Path(library_path)
        self.split = split
        self.batch_size = int(batch_size)
        self.normalisation = normalisation
        self.pairs = pairs or Pairs()
        self.shuffle = shuffle
        self.seed = int(seed)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.reads = 0
        self.largest_read = 0
        with open_library(self.library_path) as library:
            first = library[f"{split}/{self.pairs.inputs[0]}"]
            shapes = [
                tuple(int(n) for n in library[f"{split}/{name}"].shape[1:])
                for name in self.pairs.arrays
            ]
            self.stored = int(first.shape[0])
            self.chunk = chunk_length(first, library.recipe.output.chunk)
        self.per_sample = self.pairs.per_sample(shapes[-1])
        self.count = self.stored * self.per_sample
        self.limit = self.count if limit is None else min(self.count, int(limit))
        if self.pairs.super_resolution:
            self.shapes = [(*shape[:2], 1) for shape in shapes]
            if self.pairs.patch is not None and shuffle:
                side, scale = self.pairs.patch, self.pairs.scale
                self.shapes = [(side, side, 1)] + [(side * scale, side * scale, 1)] * (
                    len(shapes) - 1
                )
        else:
            self.shapes = shapes

    def __repr__(self) -> str:
        return (
            f"SplitStream({str(self.library_path)!r}, {self.split!r}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed})"
        )

    @property
    def chunks(self) -> int:
        return chunk_count(self.stored, self.chunk)

    @property
    def batches_per_epoch(self) -> int:
        return chunk_count(self.limit, self.batch_size)

    def chunk_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.chunks)
        return chunk_order(self.chunks, seed=self.seed, epoch=epoch)

    def batches(self, epoch: int = 0) -> Iterator[tuple]:
        """The batches ``(x, y)`` of epoch ``epoch``: float32 arrays, ``x`` a tuple for a
        model of several inputs; every batch holds ``batch_size`` samples but the last.
        Reconstruction: sinograms ``(b, angles, detector)`` and images ``(b, H, W)``."""
        epoch = int(epoch)
        order = self.chunk_order(epoch)
        per_chunk = self.chunk * self.per_sample
        window = max(1, -(-self.shuffle_buffer // per_chunk)) if self.shuffle else 1
        rng = np.random.default_rng([self.seed, epoch, 1])
        patches = np.random.default_rng([self.seed, epoch, 2]) if self.shuffle else None
        held = [np.empty((0, *shape), np.float32) for shape in self.shapes]
        given = 0
        with open_library(self.library_path) as library:
            arrays = [library[f"{self.split}/{name}"] for name in self.pairs.arrays]
            for first in range(0, len(order), window):
                chosen = order[first : first + window]
                parts = [self._read(arrays, int(index), patches) for index in chosen]
                columns = [
                    np.concatenate([held[i], *(part[i] for part in parts)])
                    for i in range(len(held))
                ]
                if self.shuffle:
                    permutation = rng.permutation(len(columns[0]))
                    columns = [column[permutation] for column in columns]
                whole = len(columns[0]) - len(columns[0]) % self.batch_size
                for start in range(0, whole, self.batch_size):
                    stop = min(start + self.batch_size, start + self.limit - given)
                    yield self._batch([column[start:stop] for column in columns])
                    given += stop - start
                    if given >= self.limit:
                        return
                held = [column[whole:] for column in columns]
        if len(held[0]):
            yield self._batch([column[: self.limit - given] for column in held])

    @staticmethod
    def _batch(columns: list[np.ndarray]) -> tuple:
        inputs = columns[:-1]
        return (inputs[0] if len(inputs) == 1 else tuple(inputs)), columns[-1]

    def _read(self, arrays, index: int, rng) -> list[np.ndarray]:
        start, stop = chunk_bounds(self.stored, self.chunk, index)
        values = {
            name: array[start:stop] for name, array in zip(self.pairs.arrays, arrays, strict=True)
        }
        self.reads += 1
        self.largest_read = max(self.largest_read, stop - start)
        return self.pairs.arrange(values, self.normalisation, rng)


# -- tf.data --------------------------------------------------------------------------------


def _signature(stream: SplitStream):
    import tensorflow as tf

    specs = [tf.TensorSpec((None, *shape), tf.float32) for shape in stream.shapes]
    inputs = specs[:-1]
    return (inputs[0] if len(inputs) == 1 else tuple(inputs)), specs[-1]


def training_dataset(stream: SplitStream, *, first_epoch: int, epochs: int):
    """A ``tf.data.Dataset`` of the batches of epochs ``first_epoch`` … ``epochs - 1`` of
    ``stream``, one after the other (fit it with ``steps_per_epoch =
    stream.batches_per_epoch``, ``initial_epoch = first_epoch``)."""
    import tensorflow as tf

    signature = _signature(stream)

    def epoch_batches(epoch):
        return tf.data.Dataset.from_generator(
            stream.batches, args=(epoch,), output_signature=signature
        )

    epochs_left = tf.data.Dataset.range(int(first_epoch), int(epochs))
    return epochs_left.flat_map(epoch_batches).prefetch(2)


def evaluation_dataset(stream: SplitStream):
    """A ``tf.data.Dataset`` of the batches of ``stream`` in sample order, of known length,
    read anew each time it is iterated."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(
        stream.batches, args=(0,), output_signature=_signature(stream)
    )
    return dataset.apply(tf.data.experimental.assert_cardinality(stream.batches_per_epoch))
