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
    "SplitStream",
    "chunk_length",
    "chunk_order",
    "compute_normalisation",
    "evaluation_dataset",
    "training_dataset",
]


# -- normalisation --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Normalisation:
    """``(sinogram - mean) / std``, with ``mean`` and ``std`` taken over every value of
    ``samples`` samples of split ``split`` of the library whose recipe is
    ``recipe_sha256``."""

    mean: float
    std: float
    split: str = "train"
    samples: int = 0
    recipe_sha256: str = ""

    def apply(self, sinograms: np.ndarray) -> np.ndarray:
        """The normalised sinograms, float32 (a new array)."""
        values = np.asarray(sinograms, dtype=np.float32) - np.float32(self.mean)
        values /= np.float32(self.std)
        return values

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


def compute_normalisation(
    library, split: str = "train", *, chunks: int = 8, seed: int = 0
) -> Normalisation:
    """Mean and standard deviation of the sinograms of ``chunks`` storage chunks of
    ``split``, drawn at random (seeded), read one at a time, accumulated in float64.

    A split whose sinograms are all equal gets ``std`` 1 (nothing to scale).
    """
    sinograms = library[f"{split}/sinograms"]
    count = int(sinograms.shape[0])
    if count == 0:
        msg = f"{library.path}: split {split!r} holds no samples to normalise with"
        raise ConfigError(msg)
    length = chunk_length(sinograms, library.recipe.output.chunk)
    total = chunk_count(count, length)
    picked = np.sort(np.random.default_rng(seed).permutation(total)[: max(1, chunks)])
    samples = values_seen = 0
    first = second = 0.0
    for index in picked:
        start, stop = chunk_bounds(count, length, int(index))
        values = np.asarray(sinograms[start:stop], dtype=np.float64)
        samples += stop - start
        values_seen += values.size
        first += values.sum()
        second += np.square(values).sum()
    mean = first / values_seen
    variance = max(second / values_seen - mean * mean, 0.0)
    std = math.sqrt(variance) if variance > 0 else 1.0
    return Normalisation(
        mean=float(mean),
        std=float(std),
        split=split,
        samples=int(samples),
        recipe_sha256=library.recipe_sha256,
    )


# -- streaming ------------------------------------------------------------------------------


def chunk_order(chunks: int, *, seed: int, epoch: int) -> np.ndarray:
    """The order in which an epoch visits ``chunks`` storage chunks: a permutation that
    depends only on ``seed`` and ``epoch``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(chunks)


class SplitStream:
    """Batches of one split of a library, read one storage chunk at a time.

    ``shuffle=False`` gives the split in sample order (for validation and prediction);
    ``shuffle=True`` visits chunks in :func:`chunk_order` and permutes the samples within
    windows of at least ``shuffle_buffer`` samples. ``normalisation`` (a
    :class:`Normalisation`, or ``None`` for raw sinograms) is applied to each chunk as it is
    read.
    ``reads`` counts the chunks read so far, ``largest_read`` the most samples one read
    returned.
    """

    def __init__(
        self,
        library_path: str | Path,
        split: str,
        *,
        batch_size: int,
        normalisation: Normalisation | None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 1000,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be at least 1, got {batch_size}"
            raise ConfigError(msg)
        self.library_path = Path(library_path)
        self.split = split
        self.batch_size = int(batch_size)
        self.normalisation = normalisation
        self.shuffle = shuffle
        self.seed = int(seed)
        self.shuffle_buffer = max(1, int(shuffle_buffer))
        self.reads = 0
        self.largest_read = 0
        with open_library(self.library_path) as library:
            sinograms = library[f"{split}/sinograms"]
            images = library[f"{split}/images"]
            self.count = int(sinograms.shape[0])
            self.sinogram_shape = tuple(int(n) for n in sinograms.shape[1:])
            self.image_shape = tuple(int(n) for n in images.shape[1:])
            self.chunk = chunk_length(sinograms, library.recipe.output.chunk)

    def __repr__(self) -> str:
        return (
            f"SplitStream({str(self.library_path)!r}, {self.split!r}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed})"
        )

    @property
    def chunks(self) -> int:
        return chunk_count(self.count, self.chunk)

    @property
    def batches_per_epoch(self) -> int:
        return chunk_count(self.count, self.batch_size)

    def chunk_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.chunks)
        return chunk_order(self.chunks, seed=self.seed, epoch=epoch)

    def batches(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches ``(sinograms, images)`` of epoch ``epoch``: float32 arrays of shapes
        ``(b, angles, detector)`` and ``(b, H, W)``, every ``b`` equal to ``batch_size``
        but the last."""
        epoch = int(epoch)
        order = self.chunk_order(epoch)
        window = max(1, -(-self.shuffle_buffer // self.chunk)) if self.shuffle else 1
        rng = np.random.default_rng([self.seed, epoch, 1])
        held_x = np.empty((0, *self.sinogram_shape), np.float32)
        held_y = np.empty((0, *self.image_shape), np.float32)
        with open_library(self.library_path) as library:
            sinograms = library[f"{self.split}/sinograms"]
            images = library[f"{self.split}/images"]
            for first in range(0, len(order), window):
                chosen = order[first : first + window]
                parts = [self._read(sinograms, images, int(index)) for index in chosen]
                x = np.concatenate([held_x, *(part[0] for part in parts)])
                y = np.concatenate([held_y, *(part[1] for part in parts)])
                if self.shuffle:
                    permutation = rng.permutation(len(x))
                    x, y = x[permutation], y[permutation]
                whole = len(x) - len(x) % self.batch_size
                for start in range(0, whole, self.batch_size):
                    yield x[start : start + self.batch_size], y[start : start + self.batch_size]
                held_x, held_y = x[whole:], y[whole:]
        if len(held_x):
            yield held_x, held_y

    def _read(self, sinograms, images, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, stop = chunk_bounds(self.count, self.chunk, index)
        x = np.asarray(sinograms[start:stop], dtype=np.float32)
        y = np.asarray(images[start:stop], dtype=np.float32)
        self.reads += 1
        self.largest_read = max(self.largest_read, stop - start)
        if self.normalisation is not None:
            x = self.normalisation.apply(x)
        return x, y


# -- tf.data --------------------------------------------------------------------------------


def _signature(stream: SplitStream):
    import tensorflow as tf

    return (
        tf.TensorSpec((None, *stream.sinogram_shape), tf.float32),
        tf.TensorSpec((None, *stream.image_shape), tf.float32),
    )


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
