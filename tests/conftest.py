"""Shared fixtures: a tiny recipe and a tiny library built from it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tomobench.recipe import Recipe, parse_recipe

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "name": "tiny-test",
    "task": "super-resolution",
    "seed": 11,
    "source": {
        "kind": "shapes",
        "size": 32,
        "min_shapes": 2,
        "max_shapes": 5,
        "min_shape_size": 4,
        "max_shape_size": 12,
        "circular_mask": True,
    },
    "geometry": {"angles": 24, "projector": "linear", "backend": "matrix"},
    "noise": [{"kind": "poisson", "photons": 3000}],
    "downsample": [2, 4],
    "splits": {"train": 12, "val": 5, "test": 9},
    "output": {"format": "hdf5", "chunk": 4},
}


def make_recipe(**changes) -> Recipe:
    """The tiny recipe with top-level fields replaced (nested dicts are merged)."""
    data = copy.deepcopy(TINY)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_recipe(data, origin="test recipe")


@pytest.fixture
def tiny_recipe() -> Recipe:
    return make_recipe()


@pytest.fixture(scope="session")
def tiny_library(tmp_path_factory) -> Path:
    """A complete HDF5 library of the tiny recipe (built once per session)."""
    from tomobench.build import build

    return build(make_recipe(), tmp_path_factory.mktemp("lib") / "tiny.h5")


@pytest.fixture(scope="session")
def tiny_truth(tiny_library):
    """The ground truth of the tiny library's test split, read with plain h5py."""
    import h5py

    with h5py.File(tiny_library, "r") as file:
        return file["test/images"][...]
