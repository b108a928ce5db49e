import numpy as np

from tomobench.sources import sampler
from tomobench.sources.shapes import circular_mask

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


def test_same_seed_same_image():
    assert np.array_equal(draw(42), draw(42))
    assert not np.array_equal(draw(42), draw(43))
