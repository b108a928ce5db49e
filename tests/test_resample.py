import numpy as np
import pytest

from tomobench.errors import PhysicsError
from tomobench.physics.resample import area_average, downsample


@pytest.fixture
def images():
    return np.random.default_rng(1).random((3, 16, 24)).astype(np.float32)


def test_factor_two_averages_two_by_two_blocks(images):
    expected = images.reshape(3, 8, 2, 12, 2).mean(axis=(2, 4))
    result = downsample(images, 2)
    assert result.dtype == np.float32 and result.shape == (3, 8, 12)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_factor_four_samples_block_centres(images):
    """Bilinear at the centre of a 4 × 4 block: the mean of its central 2 × 2 pixels."""
    blocks = images.reshape(3, 4, 4, 6, 4)
    expected = blocks[:, :, 1:3, :, 1:3].mean(axis=(2, 4))
    np.testing.assert_allclose(downsample(images, 4), expected, rtol=1e-6)


def test_single_image_and_channels(images):
    np.testing.assert_array_equal(downsample(images[0], 2), downsample(images, 2)[0])
    cube = np.stack([images, 2 * images], axis=-1)
    result = downsample(cube, 2)
    assert result.shape == (3, 8, 12, 2)
    np.testing.assert_allclose(result[..., 1], 2 * downsample(images, 2), rtol=1e-6)


def test_factor_must_divide(images):
    with pytest.raises(PhysicsError, match="factor 5 must divide"):
        downsample(images, 5)


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
def test_equals_skimage_bilinear_resize(factor):
    from skimage.transform import resize

    images = np.random.default_rng(factor).random((2, 24, 48, 3)).astype(np.float32)
    shape = (2, 24 // factor, 48 // factor, 3)
    expected = resize(images.astype(np.float64), shape, order=1, mode="edge",
                      anti_aliasing=False, preserve_range=True).astype(np.float32)
    np.testing.assert_allclose(downsample(images, factor), expected, rtol=0, atol=1e-7)


def test_area_average_of_a_rendered_image_by_hand():
    rng = np.random.default_rng(3)
    coarse = rng.random((2, 5, 6))
    # an image rendered 3× finer whose blocks are the pixels: its average is the image
    np.testing.assert_allclose(area_average(np.kron(coarse, np.ones((3, 3))), 3), coarse)
    fine = rng.random((4, 6))
    by_hand = [[fine[r : r + 2, c : c + 2].mean() for c in (0, 2, 4)] for r in (0, 2)]
    np.testing.assert_allclose(area_average(fine, 2), by_hand, rtol=1e-15)
    assert area_average(fine, 1).dtype == np.float64
