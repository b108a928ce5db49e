"""Sources of ground truth: each turns a per-sample random generator into an image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tomobench.sources import shapes

Draw = Callable[[np.random.Generator], np.ndarray]


def sampler(source) -> Draw:
    """The function that draws one ground-truth image (float32, [0, 1]) for ``source``."""
    if source.kind == "shapes":
        return lambda rng: shapes.draw(source, rng)
    msg = f"no sampler for source kind {source.kind!r}"  # the recipe schema prevents this
    raise ValueError(msg)
