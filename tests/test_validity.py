"""Published libraries measure what they claim: no projection loses image mass, the 2020
generator's statistics, rendered (not replicated) oversampling, identities per backend."""

import importlib

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.draw import random_shapes

from tomobench.errors import RecipeError
from tomobench.physics.projector import resolve_backend
from tomobench.physics.resample import area_average
from tomobench.recipe import load_recipe, parse_recipe, published_recipes
from tomobench.sources import sampler

from conftest import make_recipe

build_module = importlib.import_module("tomobench.chunk")
DOWNLOADS = {"div2k-64", "microct"}  # their sources are fetched: geometry checked alone
LOCAL = sorted(set(published_recipes()) - DOWNLOADS)


def clean(name: str, **geometry):
    """A published recipe without noise (a few samples of test), geometry fields replaced."""
    data = load_recipe(name).model_dump(mode="json")
    data["noise"] = []
    data["geometry"].update(geometry)
    return parse_recipe(data)


def chunk(recipe, count):
    arrays = build_module.make_chunk(recipe, "test", 0, count, backend="matrix")
    return arrays["images"].astype(np.float64), arrays["sinograms"].astype(np.float64)


def count_for(recipe) -> int:
    return 2 if recipe.channels else 24


@pytest.mark.parametrize("name", LOCAL)
def test_no_projection_of_a_published_recipe_loses_mass(name):
    """With the strip model (exact pixel areas), in every projection the detector sum equals
    the image sum within 0.1 %: the field of view holds all of the ground truth. And the
    recipe's own projector gives the same projection sums as a detector 40 pixels wider:
    nothing falls outside it."""
    recipe = clean(name)
    count = count_for(recipe)
    spacing = recipe.geometry.detector_spacing
    strip = clean(name, projector="strip")
    images, sinograms = chunk(strip, count)
    mass = images.sum(axis=(1, 2))[:, None]  # (n, 1) or (n, 1, C)
    sums = sinograms.sum(axis=2) * spacing
    signal = np.broadcast_to(mass > 1e-3 * mass.max(), sums.shape)
    assert np.abs(sums / np.where(mass > 0, mass, 1) - 1)[signal].max() < 1e-3
    _, own = chunk(recipe, count)
    wider = clean(name, detector=recipe.detector_count + 40)
    _, wide = chunk(wider, count)
    np.testing.assert_allclose(
        own.sum(axis=2), wide.sum(axis=2), rtol=1e-5, atol=1e-5 * wide.max()
    )
    np.testing.assert_allclose(own, wide[:, :, 20:-20], rtol=1e-3, atol=1e-5 * wide.max())


@pytest.mark.parametrize("name", sorted(published_recipes()))
def test_every_published_detector_covers_its_source(name):
    recipe = load_recipe(name)
    assert recipe.detector_count * recipe.geometry.detector_spacing >= recipe.field_needed
    if recipe.source.kind in ("div2k", "experimental") or not getattr(
        recipe.source, "circular_mask", True
    ):  # sources that fill the square: the detector spans its diagonal
        assert recipe.detector_count >= np.ceil(recipe.image_size * np.sqrt(2))


def test_a_detector_that_truncates_is_refused_with_the_width_it_needs():
    with pytest.raises(RecipeError) as error:
        make_recipe(source={"circular_mask": False}, geometry={"detector": 32})
    message = str(error.value)
    assert "geometry.detector: 32 pixels" in message and "at least 46 pixels" in message
    assert "\n" not in message
    # a masked source needs its disc's diameter plus the projector's reach
    with pytest.raises(RecipeError, match="at least 34 pixels"):
        make_recipe(geometry={"detector": 32})
    assert make_recipe(geometry={"detector": 34}).detector_count == 34
    assert make_recipe().detector_count == 34  # the default covers the source
    assert make_recipe(source={"circular_mask": False}).detector_count == 46


def test_the_default_detector_of_a_square_filling_source_loses_no_mass():
    """A square-filling source: the default detector (the diagonal) sees everything."""
    base = {"source": {"circular_mask": False}, "noise": []}
    recipe = make_recipe(**base, geometry={"projector": "strip"})
    images, sinograms = chunk(recipe, 16)
    mass = images.sum(axis=(1, 2))[:, None]
    assert np.abs(sinograms.sum(axis=2) / mass - 1).max() < 1e-3


# -- the 2020 generator ------------------------------------------------------------------


def cirmask_2020(image, npx):
    """The 2020 mask, from its description: pixels farther than floor(size/2) - npx from the
    pixel (round(size/2), round(size/2)) are set to 0."""
    size = image.shape[0]
    centre = np.round(size / 2)
    rows, cols = np.mgrid[:size, :size]
    distance = np.sqrt((cols - centre) ** 2 + (rows - centre) ** 2)
    return np.where(distance > np.floor(size / 2) - npx, 0, image)


def generator_2020(rng):
    """The 2020 library loop (LibShapes.py), step by step, written from its description."""
    image, _ = random_shapes(
        (32, 32), min_shapes=3, max_shapes=10, min_size=3, max_size=10,
        allow_overlap=True, channel_axis=None, rng=rng,
    )
    image = np.where(image == 255, 1, image).astype(np.float64)
    image = image / image.max()
    image = cirmask_2020(image, 5)
    if image.max() > 0:
        image = image / image.max()
    image = rng.poisson(image * 2**8) / 2**8
    if image.max() > 0:
        image = image / image.max()
    image = gaussian_filter(image, sigma=1)
    if image.max() > 0:
        image = image / image.max()
    return image


def statistics(images):
    size = images.shape[-1]
    rows, cols = np.mgrid[:size, :size]
    radius = np.hypot(rows - (size - 1) / 2, cols - (size - 1) / 2)
    mass = images.sum(axis=(1, 2))
    return {
        "beyond 12 px": float((images[:, radius > 12].sum(axis=1) / mass).mean()),
        "mean": float(images.mean()),
        "inside mean": float(images[:, radius <= 8].mean()),
        "max": float(images.max(axis=(1, 2)).mean()),
        "background": float(np.median(images[:, radius <= 11], axis=1).mean()),
    }


def test_shapes_32_seed_without_oversampling_is_the_2020_generator_draw_for_draw():
    """At oversample 1 the recipe's source makes the very images of the 2020 loop from the
    same random stream (skimage's random_shapes, then the same generator's draws)."""
    source = load_recipe("shapes-32-seed").source
    draw = sampler(source, "test")
    for seed in range(20):
        ours = draw(0, np.random.default_rng(seed))
        theirs = generator_2020(np.random.default_rng(seed))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-7)


def test_shapes_32_seed_keeps_the_2020_statistics():
    """The published recipe (rendered 4× finer) matches the 2020 loop's statistics; the mass
    beyond 12 px of the centre is about 2 %, as in 2020 (it was 33 % before)."""
    recipe = load_recipe("shapes-32-seed")
    images = build_module.make_chunk(recipe, "test", 0, 300, backend="matrix")["images"]
    rng = np.random.default_rng(99)
    reference = np.stack([generator_2020(rng) for _ in range(300)])
    ours, theirs = statistics(images.astype(np.float64)), statistics(reference)
    assert 0.005 < theirs["beyond 12 px"] < 0.04
    assert abs(ours["beyond 12 px"] - theirs["beyond 12 px"]) < 0.01
    for key in ("mean", "inside mean"):
        assert ours[key] == pytest.approx(theirs[key], rel=0.1), key
    assert ours["max"] == pytest.approx(1.0) and theirs["max"] == pytest.approx(1.0)
    assert images.dtype == np.float32 and images.min() >= 0


def test_the_2020_background_is_one_grey_level():
    source = make_recipe(
        source={
            "generator": "skimage", "intensity": [1.0, 1.0], "background": 1 / 254,
            "circular_mask": False, "min_shapes": 1, "max_shapes": 1,
        }
    ).source
    image = sampler(source, "test")(0, np.random.default_rng(1))
    assert set(np.unique(image).tolist()) == {np.float32(1 / 254), np.float32(1.0)}


# -- oversampling renders the source finer -----------------------------------------------


def test_oversampled_ground_truth_is_the_area_average_of_what_is_projected():
    recipe = make_recipe(noise=[], geometry={"oversample": 4, "projector": "strip"})
    rngs = build_module.sample_rngs(recipe, "test", 0, 4)
    fine = build_module.draw_samples(recipe, "test", 0, rngs)["images"]
    assert fine.shape == (4, 128, 128)
    arrays = build_module.make_chunk(recipe, "test", 0, 4, backend="matrix")
    np.testing.assert_array_equal(arrays["images"], area_average(fine, 4).astype(np.float32))
    # edges fall between the ground truth's pixels: values other than the shapes' own
    coarse = arrays["images"]
    assert len(np.unique(coarse)) > 3 * len(np.unique(fine))
    # the sinograms are those of the fine image on a 4× finer detector, binned: ASTRA itself
    import astra

    volume = astra.create_vol_geom(128, 128, -16, 16, -16, 16)
    angles = np.linspace(0, np.pi, recipe.geometry.angles, endpoint=False)
    projection = astra.create_proj_geom("parallel", 0.25, 4 * recipe.detector_count, angles)
    projector = astra.create_projector("strip", projection, volume)
    try:
        sinogram_id, sinogram = astra.create_sino(fine[0], projector)
        astra.data2d.delete(sinogram_id)
    finally:
        astra.projector.delete(projector)
    binned = sinogram.reshape(len(angles), recipe.detector_count, 4).mean(-1)
    np.testing.assert_allclose(arrays["sinograms"][0], binned, rtol=1e-4, atol=1e-5)


def test_oversampled_image_noise_has_the_statistics_of_the_ground_truth_pixel():
    """Counts k² times fewer per fine pixel: a flat image's ground-truth pixel is Poisson at
    the recipe's counts, its variance v / counts."""
    source = {
        "intensity": [0.5, 0.5], "min_shapes": 1, "max_shapes": 1, "shape": "rectangle",
        "min_shape_size": 32, "max_shape_size": 32, "circular_mask": False,
        "image_noise_counts": 64,
    }
    recipe = make_recipe(source=source, noise=[], geometry={"oversample": 4})
    arrays = build_module.make_chunk(recipe, "test", 0, 8, backend="matrix")
    values = arrays["images"].astype(np.float64)
    assert values.mean() == pytest.approx(0.5, rel=0.02)
    assert values.var() == pytest.approx(0.5 / 64, rel=0.1)


def test_oversampling_is_refused_for_pixel_image_sources():
    with pytest.raises(RecipeError, match="oversample 2 needs a source that renders"):
        parse_recipe(
            {
                "name": "x", "seed": 1,
                "source": {"kind": "experimental", "size": 16, "path": "a.npy",
                           "slices": {"test": ["all"]}},
                "geometry": {"oversample": 2}, "splits": {"test": 1},
            }
        )


def test_oversampling_moves_sirt_off_the_inverse_crime():
    """Clean data made with the reconstruction's own discretisation are solved almost
    exactly by SIRT; rendered 4× finer, they are not."""
    from tomobench.baselines import sirt
    from tomobench.metrics import psnr
    from tomobench.physics.geometry import from_recipe

    scores = {}
    for factor in (1, 4):
        recipe = make_recipe(noise=[], geometry={"oversample": factor, "angles": 48})
        arrays = build_module.make_chunk(recipe, "test", 0, 8, backend="matrix")
        geometry = from_recipe(recipe)
        recon = sirt(arrays["sinograms"], geometry, iterations=300, nonnegative=True)
        scores[factor] = float(np.mean(psnr(arrays["images"], np.clip(recon, 0, 1))))
    assert scores[1] > scores[4] + 5  # measured: 44.4 and 37.3 dB


# -- identity: the backend is part of it ---------------------------------------------------


def test_auto_makes_the_evaluation_splits_on_the_cpu_whatever_the_machine(monkeypatch):
    from tomobench.physics import projector
    from tomobench.physics.geometry import from_recipe

    recipe = load_recipe("shapes-128")

    monkeypatch.setattr(projector, "cuda_available", lambda: True)
    resolved = {
        split: resolve_backend("auto", geometry=from_recipe(recipe), split=split)
        for split in ("train", "val", "test")
    }
    assert resolved == {"train": "astra-cuda", "val": "matrix", "test": "matrix"}


def test_identities_differ_by_backend_and_are_recorded_per_split(tmp_path):
    import h5py

    from tomobench.builder import build
    from tomobench.store import identity, open_library

    paths = {}
    for backend in ("matrix", "astra-cpu"):
        splits = {"train": 0, "val": 0, "test": 3}
        recipe = make_recipe(geometry={"backend": backend}, splits=splits)
        paths[backend] = build(recipe, tmp_path / f"{backend}.h5")
    found = {}
    for backend, path in paths.items():
        with open_library(path) as library:
            found[backend] = library.identity("test")
            assert found[backend]["backend"] == backend
            assert found[backend]["tomobench_format"] == 2
        with h5py.File(path, "r") as file:  # recorded in the file, readable by h5py alone
            import json

            assert json.loads(file.attrs["backend"]) == {"test": backend}
            assert json.loads(file.attrs["identity"]) == {"test": found[backend]["sha256"]}
    # same recipe except the backend field... and the backend: identities differ
    assert found["matrix"]["sha256"] != found["astra-cpu"]["sha256"]
    one = identity("a" * 64, "matrix", 2)["sha256"]
    assert one != identity("a" * 64, "astra-cuda", 2)["sha256"]
    assert one != identity("a" * 64, "matrix", 1)["sha256"]
    assert one == identity("a" * 64, "matrix", 2)["sha256"]


PINNED = {  # sha256 of the arrays of samples 0-2 of test, names sorted, as built by format 2
    "demo": "e31385130d9a4217e80fb8c6916bff1629aaed1e4f7cff6c07f8eefc57a3b774",
    "shapes-32-seed": "e3b2f993dfcd0746500e0f67939b5ab823f47d1073adf4e40164f48cc54888e9",
    "particles-32": "3425ee91fbe8251040db067072258f29e1056b02fc26161d7a4b33eaaf81c5e2",
    "shapes-128": "ccfb322a34313305a070950ebe40e911ca2d8205e0b143888a9f97b5cbed7734",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_published_test_splits_are_pinned_bytes(name):
    """One identity, one set of bytes: a change of tomobench or of a dependency (numpy's
    Poisson sampler, skimage's shapes, ASTRA's matrix) that changes a published test split
    must raise the format version (docs/format.md, "Identity")."""
    import hashlib

    arrays = build_module.make_chunk(load_recipe(name), "test", 0, 3, backend="matrix")
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    assert digest.hexdigest() == PINNED[name]
