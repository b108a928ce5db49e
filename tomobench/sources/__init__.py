"""Sources of ground truth.

A source turns (split, sample index, the sample's random generator) into one ground-truth
image, float32 in [0, 1]. Sources that start from files (a registry dataset, a local stack)
fetch and preprocess them once, in :func:`prepare`, before any sample is drawn; the draws
themselves then only read what ``prepare`` left in the cache.

A worker of a remote cluster has no such cache: the process that prepared the source reads
what each sample draws from (:func:`inputs`, :func:`load_input`: a DIV2K image's PNG bytes, a
reconstructed slice, a masks array) and hands it to the sampler (``materials``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tomobench.sources import shapes

Draw = Callable[[int, np.random.Generator], np.ndarray]


def prepare(source) -> None:
    """Fetch and preprocess what ``source`` draws from (a no-op for synthetic sources)."""
    module = _module(source)
    if hasattr(module, "prepare"):
        module.prepare(source)


def check_counts(source, splits: dict[str, int]) -> None:
    """Raise if a split asks for more distinct samples than the source can give."""
    module = _module(source)
    if hasattr(module, "check_counts"):
        module.check_counts(source, splits)


def root_arrays(source) -> dict[str, np.ndarray]:
    """Arrays stored once at the library's root (e.g. the 2θ axis of a hyperspectral one)."""
    return getattr(_module(source), "root_arrays", lambda source: {})(source)


def root_attrs(source) -> dict:
    """Attributes the source adds to the library's root."""
    return getattr(_module(source), "root_attrs", lambda source: {})(source)


def sample_shapes(source) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of the arrays a source stores beside ``images`` (ground truth such
    as phase maps); a sampler that has any returns ``(image, {name: array})``."""
    return getattr(_module(source), "sample_shapes", lambda source: {})(source)


def sampler(source, split: str, oversample: int = 1, materials: dict | None = None) -> Draw:
    """The function ``draw(index, rng)`` that makes sample ``index`` of ``split``; with
    ``oversample`` k > 1 (sources that render finer than their pixels), an image k× finer
    whose area average over k × k blocks is the ground truth. ``materials`` maps each sample
    index to be drawn to what it draws from (:func:`load_input`); without them, a source that
    starts from files reads them from this machine's cache."""
    module = _module(source)
    if oversample != 1:
        return module.sampler(source, split, oversample)
    if materials is not None and hasattr(module, "inputs"):
        return module.sampler(source, split, materials=materials)
    return module.sampler(source, split)


def inputs(source, split: str, start: int, stop: int) -> dict[int, tuple] | None:
    """For each sample ``start:stop`` of ``split``, the key of what it draws from (samples
    that draw from the same file share a key); None for sources that need nothing."""
    module = _module(source)
    return module.inputs(source, split, start, stop) if hasattr(module, "inputs") else None


def load_input(source, key: tuple):
    """What the samples of ``key`` (:func:`inputs`) draw from, read from this machine's
    cache (the source prepared)."""
    return _module(source).load_input(source, key)


def _module(source):
    if source.kind == "shapes":
        return shapes
    if source.kind == "div2k":
        from tomobench.sources import div2k

        return div2k
    if source.kind == "experimental":
        from tomobench.sources import experimental

        return experimental
    if source.kind == "xrdct":
        from tomobench.sources import xrdct

        return xrdct
    if source.kind == "particles":
        from tomobench.sources import particles

        return particles
    msg = f"no source of kind {source.kind!r}"  # the recipe schema prevents this
    raise ValueError(msg)
