import numpy as np
import pytest

from tomobench.physics.geometry import circular_mask
from tomobench.sources import sampler

from conftest import make_recipe


def draw(seed=0, **source):
    recipe = make_recipe(source=source)
    return sampler(recipe.source, "train")(0, np.random.default_rng(seed))


def test_images_are_float32_in_unit_range():
    for seed in range(20):
        image = draw(seed)
        assert image.dtype == np.float32 and image.shape == (32, 32)
        assert image.min() >= 0 and image.max() <= 1 and image.max() > 0


def test_circular_mask_zeroes_the_corners():
    mask = circular_mask(32)
    for seed in range(10):
        assert not draw(seed, circular_mask=True)[~mask].any()
    assert mask.sum() == np.count_nonzero(np.hypot(*np.mgrid[-15.5:16, -15.5:16]) <= 16)


def test_intensity_range_sets_shape_values():
    image = draw(3, intensity=[0.5, 0.5], circular_mask=False)
    assert set(np.unique(image)) == {0.0, 0.5}


def test_shape_count_and_family():
    for seed in range(10):
        image = draw(seed, min_shapes=1, max_shapes=1, intensity=[1, 1], shape="rectangle",
                     circular_mask=False)
        rows, cols = np.nonzero(image)
        box = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert box.all()  # one filled rectangle
        assert 4 <= box.shape[0] <= 12 and 4 <= box.shape[1] <= 12


def test_seed_scheme_noise_smoothing_and_normalisation():
    image = draw(1, image_noise_counts=256, smooth_sigma=1.0, normalize=True)
    assert image.max() == 1.0
    plain = draw(1)
    assert not np.array_equal(image, plain)
    # smoothing spreads values: far more distinct levels than shapes
    assert len(np.unique(image)) > 50


@pytest.mark.parametrize("generator", ["fast", "skimage"])
def test_the_2020_steps_by_hand(generator):
    """Shapes, then the circular mask, Poisson counting at ``image_noise_counts``, Gaussian
    smoothing of σ = ``smooth_sigma`` and division by the maximum, from the same generator."""
    from scipy.ndimage import gaussian_filter

    from tomobench.sources import shapes

    for counts, sigma in ((256, 1.0), (40, 2.5)):
        recipe = make_recipe(source={"generator": generator, "image_noise_counts": counts,
                                     "smooth_sigma": sigma, "normalize": True})
        rng = np.random.default_rng(9)
        shaped = getattr(shapes, f"_{generator}_shapes")(recipe.source, rng)
        image = shaped * circular_mask(32)
        image = rng.poisson(np.clip(image.astype(np.float64), 0, None) * counts) / counts
        image = gaussian_filter(image, sigma)
        expected = np.clip(image / image.max(), 0, 1).astype(np.float32)
        assert np.array_equal(sampler(recipe.source, "train")(0, np.random.default_rng(9)),
                              expected)


def test_same_seed_same_image():
    assert np.array_equal(draw(42), draw(42))
    assert not np.array_equal(draw(42), draw(43))


@pytest.mark.parametrize(
    ("family", "area"),
    [("circle", lambda s: np.pi * s * s / 4), ("triangle", lambda s: np.sqrt(3) / 4 * s * s)],
)
def test_fast_shapes_have_the_area_of_their_extent(family, area):
    """One shape of extent s = 24 (min = max) covers the area geometry says it should."""
    for seed in range(5):
        image = draw(seed, min_shapes=1, max_shapes=1, min_shape_size=24, max_shape_size=24,
                     intensity=[1, 1], shape=family, circular_mask=False)
        assert abs(image.sum() - area(24)) < 0.06 * area(24)


def test_fast_ellipses_lie_within_their_diameters():
    for seed in range(5):
        image = draw(seed, min_shapes=1, max_shapes=1, min_shape_size=8, max_shape_size=16,
                     intensity=[1, 1], shape="ellipse", circular_mask=False)
        assert np.pi / 4 * 8 * 8 * 0.9 < image.sum() < np.pi / 4 * 16 * 16 * 1.1


@pytest.mark.parametrize("generator", ["fast", "skimage"])
def test_every_generator_draws_the_asked_family(generator):
    for seed in range(8):
        image = draw(seed, generator=generator, min_shapes=2, max_shapes=5,
                     intensity=[0.2, 0.9], circular_mask=False)
        values = set(np.unique(image)) - {0.0}
        assert 1 <= len(values) <= 5
        assert min(values) >= 0.2 - 1 / 254 and max(values) <= 0.9 + 1 / 254
