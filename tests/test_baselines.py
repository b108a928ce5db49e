import shutil

import astra
import numpy as np
import pytest
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from tomobench import baselines
from tomobench.errors import PhysicsError, RecipeError, StoreError
from tomobench.physics.geometry import circular_mask, parallel_beam
from tomobench.physics.projector import Projector
from tomobench.store import open_library

from conftest import SMALL_XRDCT

SIZE, ANGLES = 32, 40
GEOMETRY = parallel_beam(SIZE, angles=ANGLES)


@pytest.fixture(scope="module")
def phantoms():
    phantom = resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True)
    rng = np.random.default_rng(0)
    blobs = np.clip(rng.random((2, SIZE, SIZE)), 0.3, 0.7) - 0.3
    return (np.stack([phantom, *blobs]) * circular_mask(SIZE)).astype(np.float32)


@pytest.fixture(scope="module")
def sinograms(phantoms):
    return Projector(GEOMETRY, backend="astra-cpu").forward(phantoms)


def astra_algorithm(name, sinogram, *, iterations=1, mask=None, **options):
    """ASTRA's own CPU algorithm, run directly, as the reference."""
    volume = astra.create_vol_geom(SIZE, SIZE)
    projection = astra.create_proj_geom("parallel", 1.0, SIZE, GEOMETRY.angle_values)
    projector = astra.create_projector("linear", projection, volume)
    sinogram_id = astra.data2d.create("-sino", projection, sinogram)
    volume_id = astra.data2d.create("-vol", volume, 0)
    config = astra.astra_dict(name)
    config.update(ProjectorId=projector, ProjectionDataId=sinogram_id,
                  ReconstructionDataId=volume_id, option=options)
    if mask is not None:
        mask_id = astra.data2d.create("-vol", volume, mask.astype(np.float32))
        config["option"]["ReconstructionMaskId"] = mask_id
    algorithm = astra.algorithm.create(config)
    astra.algorithm.run(algorithm, iterations)
    result = astra.data2d.get(volume_id)
    astra.algorithm.delete(algorithm)
    astra.data2d.delete([sinogram_id, volume_id])
    astra.projector.delete(projector)
    return result


def relative_error(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("filter", baselines.FBP_FILTERS)
def test_fbp_is_astras_fbp(sinograms, filter):
    images = baselines.fbp(sinograms, GEOMETRY, filter=filter)
    assert images.shape == (3, SIZE, SIZE) and images.dtype == np.float32
    for image, sinogram in zip(images, sinograms):
        reference = astra_algorithm("FBP", sinogram, FilterType=filter)
        assert relative_error(image, reference) < 1e-6


def test_fbp_reconstructs_the_phantom(phantoms, sinograms):
    image = baselines.fbp(sinograms[0], GEOMETRY)
    assert np.abs(image - phantoms[0]).mean() < 0.05


@pytest.mark.parametrize("nonnegative", [False, True])
def test_sirt_matches_astras_sirt(sinograms, nonnegative):
    images = baselines.sirt(sinograms, GEOMETRY, iterations=25, nonnegative=nonnegative)
    for image, sinogram in zip(images, sinograms):
        options = {"MinConstraint": 0.0} if nonnegative else {}
        reference = astra_algorithm("SIRT", sinogram, iterations=25, **options)
        assert relative_error(image, reference) < 1e-4
    if nonnegative:
        assert images.min() >= 0


def test_sirt_with_a_mask_matches_astra(sinograms):
    mask = circular_mask(SIZE)
    image = baselines.sirt(sinograms[1], GEOMETRY, iterations=20, mask=True)
    reference = astra_algorithm("SIRT", sinograms[1], iterations=20, mask=mask)
    assert relative_error(image, reference) < 1e-4
    assert not image[~mask].any()


def test_cgls_matches_astras_cgls(sinograms):
    images = baselines.cgls(sinograms, GEOMETRY, iterations=12)
    for image, sinogram in zip(images, sinograms):
        reference = astra_algorithm("CGLS", sinogram, iterations=12)
        assert relative_error(image, reference) < 1e-3


def test_iterations_improve_the_fit(phantoms, sinograms):
    few = baselines.cgls(sinograms, GEOMETRY, iterations=3)
    many = baselines.cgls(sinograms, GEOMETRY, iterations=30)
    assert np.abs(many - phantoms).mean() < np.abs(few - phantoms).mean()


def test_batch_equals_one_by_one(sinograms):
    batch = baselines.sirt(sinograms, GEOMETRY, iterations=5)
    assert np.array_equal(batch[2], baselines.sirt(sinograms[2], GEOMETRY, iterations=5))


def test_run_uses_the_library_geometry(tiny_library):
    with open_library(tiny_library) as library:
        images = library["test/images"][...]
        everything = baselines.run("fbp", library, split="test")
        some = baselines.run("fbp", library, split="test", indices=[4, 1])
    assert everything.shape == images.shape
    assert np.array_equal(some, everything[[4, 1]])
    correlation = np.corrcoef(everything.ravel(), images.ravel())[0, 1]
    assert correlation > 0.7


def test_bad_options(sinograms, tiny_library):
    with pytest.raises(PhysicsError, match="unknown FBP filter 'ramp'"):
        baselines.fbp(sinograms, GEOMETRY, filter="ramp")
    with pytest.raises(RecipeError, match="iterations must be a positive integer"):
        baselines.sirt(sinograms, GEOMETRY, iterations=0)
    with open_library(tiny_library) as library:
        with pytest.raises(RecipeError, match="unknown baseline"):
            baselines.run("art", library)


TAKES = {
    "fbp": "filter, model, backend, nonnegative, mask",
    "sirt": "iterations, model, backend, nonnegative, mask",
    "cgls": "iterations, model, backend, nonnegative, mask",
}


@pytest.mark.parametrize(
    ("method", "options", "unknown"),
    [("fbp", {"iterations": 5}, "option 'iterations'"),
     ("sirt", {"filter": "hann"}, "option 'filter'"),
     ("cgls", {"filter": "hann", "iterations": 3, "relax": 1.0}, "options 'filter', 'relax'")],
)  # fmt: skip
def test_an_option_the_method_does_not_take_is_a_one_line_recipe_error(
    tiny_library, method, options, unknown
):
    with open_library(tiny_library) as library, pytest.raises(RecipeError) as caught:
        baselines.run(method, library, **options)
    expected = f"baseline {method!r} takes no {unknown} (it takes {TAKES[method]})"
    assert str(caught.value) == expected
    assert not isinstance(caught.value, TypeError)


def test_an_incomplete_library_is_refused_before_reconstructing(tmp_path, tiny_library):
    partial = shutil.copy(tiny_library, tmp_path / "lib.h5.partial")  # a build under way
    with open_library(tmp_path / "lib.h5") as library, pytest.raises(StoreError) as caught:
        baselines.run("sirt", library, iterations=2)
    assert str(caught.value) == (
        f"{partial}: the library is incomplete (a build in progress or interrupted); finish "
        "the build before reconstructing from it"
    )


def test_fbp_on_a_clean_128_pixel_library_scores_above_25_db(tmp_path):
    """The 2020 project's setting without noise: 128², 180 angles."""
    from tomobench.builder import build
    from tomobench.metrics import psnr

    from conftest import make_recipe

    recipe = make_recipe(
        source={"size": 128, "min_shapes": 3, "max_shapes": 10, "min_shape_size": 8,
                "max_shape_size": 48, "circular_mask": False},
        geometry={"angles": 180}, noise=[], downsample=[2], splits={"test": 8},
    )
    with open_library(build(recipe, tmp_path / "clean.h5")) as library:
        images = library["test/images"][...]
        scores = psnr(images, baselines.run("fbp", library))
    assert scores.mean() > 25


# -- hyperspectral: the air background is removed before reconstructing ----------------------

AIR = {**SMALL_XRDCT, "name": "air-xrdct"}


def air_recipe(**changes):
    from tomobench.recipe import parse_recipe

    return parse_recipe({**AIR, **changes})


def hump(two_theta, centre, fwhm):
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    return np.exp(-0.5 * ((two_theta - centre) / sigma) ** 2)


def test_hyperspectral_fbp_subtracts_the_air_hump_the_build_added(tmp_path):
    from tomobench.builder import build
    from tomobench.chunk import make_chunk
    from tomobench.metrics import psnr
    from tomobench.physics.geometry import air_pixels, from_recipe

    recipe = air_recipe()
    air = air_pixels(recipe)
    assert air.sum() == 8  # |offset| > 8 + 1 + 1/2: four pixels at each end of 28
    clean = make_chunk(air_recipe(noise=[]), "test", 0, 3, backend="matrix")["sinograms"]
    assert not clean[:, :, air].any()  # the air pixels see nothing of the sample
    # the build's air scatter: level × each sinogram's peak × a Gaussian in 2θ centred 10 %
    # into the range, its FWHM half the range
    shape = hump(np.linspace(2.0, 8.0, 24), 2.6, 3.0)
    expected = 0.1 * clean.max(axis=(1, 2, 3))[:, None] * shape  # (3, C)

    with open_library(build(recipe, tmp_path / "air.h5")) as library:
        raw = library["test/sinograms"][...]
        truth = library["test/images"][...]
        corrected = baselines.run("fbp", library)
        one = baselines.run("sirt", library, indices=[2], iterations=10)
    geometry = from_recipe(recipe)
    subtracted = (raw - expected[:, None, None, :]).astype(np.float32)
    for index in range(3):
        channels = np.moveaxis(subtracted[index], -1, 0)
        by_hand = np.moveaxis(baselines.fbp(channels, geometry), 0, -1)
        np.testing.assert_allclose(corrected[index], by_hand, rtol=0, atol=1e-5)
    by_hand = baselines.sirt(np.moveaxis(subtracted[2], -1, 0), geometry, iterations=10)
    np.testing.assert_allclose(one[0], np.moveaxis(by_hand, 0, -1), rtol=0, atol=1e-5)

    without = np.stack(
        [np.moveaxis(baselines.fbp(np.moveaxis(s, -1, 0), geometry), 0, -1) for s in raw]
    )
    after = psnr(truth, np.clip(corrected, 0, 1))
    before = psnr(truth, np.clip(without, 0, 1))
    assert np.all(after > before + 0.2)
    for index in range(3):  # the estimate itself: the hump, to float32 rounding
        background = baselines.air_background(raw[index], air)
        np.testing.assert_allclose(background, expected[index], rtol=1e-5, atol=1e-7)


def test_hyperspectral_baselines_refuse_air_scatter_without_air_pixels(tmp_path):
    from tomobench.builder import build
    from tomobench.errors import StoreError

    narrow = air_recipe(name="narrow-xrdct", geometry={"angles": 24, "backend": "matrix"})
    with open_library(build(narrow, tmp_path / "narrow.h5")) as library:
        with pytest.raises(StoreError) as caught:
            baselines.run("fbp", library)
    message = str(caught.value)
    assert "narrow-xrdct" in message and "no air pixels to estimate the background" in message
    assert "\n" not in message

    # without air scatter there is nothing to subtract: the sinograms go in as they are
    clean = air_recipe(name="clean-xrdct", geometry={"angles": 24, "backend": "matrix"},
                       noise=[{"kind": "counting", "counts": 100}])  # fmt: skip
    with open_library(build(clean, tmp_path / "clean.h5")) as library:
        raw = library["test/sinograms"][...]
        images = baselines.run("fbp", library)
    from tomobench.physics.geometry import from_recipe

    for index in range(3):
        alone = baselines.fbp(np.moveaxis(raw[index], -1, 0), from_recipe(clean))
        np.testing.assert_array_equal(images[index], np.moveaxis(alone, 0, -1))
